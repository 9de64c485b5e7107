"""The report's device sections (results format 3): what each device's target was, read on the target, and the
functional check of its outputs against this host's CPU. Emulated devices appear here only: they never have
a speed or memory figure."""

import pandas as pd


def _gpu_text(environment: dict) -> str:
    gpus = environment.get("gpus") or []
    return "; ".join(f"{gpu['name']} (driver {gpu['driver']}, CUDA {gpu['cuda_driver']})" for gpu in gpus)


def devices_frame(results: dict) -> pd.DataFrame:
    rows = []
    for device in results.get("devices", []):
        environment = device.get("environment") or {}
        cpu, onnxruntime = environment.get("cpu") or {}, environment.get("onnxruntime") or {}
        rows.append({
            "device": device["device"], "profile": device.get("profile"), "status": device["status"],
            "backend": device.get("backend"), "precision": device.get("precision"),
            "target": device.get("target"), "transport": device.get("transport"), "emulated": device.get("emulated"),
            "machine": environment.get("machine"), "cpu": cpu.get("model"),
            "cores": cpu.get("logical_cores"), "governor": ", ".join(cpu.get("governors") or {}) or None,
            "onnxruntime": onnxruntime.get("version"),
            "providers": ", ".join(onnxruntime.get("available_providers") or []) or None,
            "gpu": _gpu_text(environment) or None, "reason": device.get("reason"),
        })
    return pd.DataFrame(rows)


def functional_frame(results: dict) -> pd.DataFrame:
    rows = []
    for config in results["configs"]:
        parity = config.get("parity")
        if parity is None:
            continue
        emulated = bool(config.get("emulated"))
        wall = parity.get("emulated_wall_s" if emulated else "wall_s") or {}
        rows.append({
            "device": config["device"], "model": config["label"], "layer": config["deformer"]["layer"],
            "emulated": emulated, "passed": parity["passed"],
            # null: a difference that was not a number (NaN or inf outputs)
            "max_abs_diff": max(float("inf") if value is None else value for value in parity["max_abs_diff"].values())
            if parity["max_abs_diff"] else None,
            "tolerance": parity["tolerance"], "providers_used": ", ".join(config["providers"].get("used") or []),
            ("emulated_wall_s" if emulated else "wall_s") + " (unsplit / online)":
                f"{wall.get('unsplit', float('nan')):.3f} / {wall.get('online', float('nan')):.3f}",
        })
    return pd.DataFrame(rows)


def functional_only_rows(results: dict) -> pd.DataFrame:
    """Rows for the speed-up table of configs checked under emulation: they say so, with no figure."""
    rows = [{"model": config["label"], "device": config["device"], "layer": config["deformer"]["layer"],
             "batch_size": None, "speedup": "functional only (emulated)"}
            for config in results["configs"] if config.get("emulated")]
    return pd.DataFrame(rows)


def device_sections(results: dict, markdown_table) -> list:
    if "devices" not in results:
        return []
    lines = ["## Devices", "",
             "Each device's target as its runner read it there (CPU, cores, governor, onnxruntime and its providers, "
             "GPU). `emulated`: an aarch64 Python under qemu: a functional check, never a speed figure.", "",
             markdown_table(devices_frame(results)), ""]
    functional = functional_frame(results)
    if not functional.empty:
        lines += ["## Functional check of each device", "",
                  "Each device runs every path once on the same staged batch-1 inputs; `max_abs_diff`: the largest "
                  "difference of its logits and passage states from this host's CPU (onnxruntime CPU provider). "
                  "A device that fails it is not timed. Wall times are of single runs (under an emulator, the "
                  "emulator's), not latencies.", "", markdown_table(functional), ""]
    if results.get("failures"):
        lines += ["## Failures", ""] + [f"- {failure}" for failure in results["failures"]] + [""]
    return lines
