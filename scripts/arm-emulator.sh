#!/usr/bin/env bash
# Build an emulated aarch64 Python 3.11 with numpy and onnxruntime under qemu-user, for CORRECTNESS
# checks of ONNX graphs on ARM; never for timing (emulated speed says nothing about ARM hardware).
#   bash scripts/arm-emulator.sh   (or: make arm-emulator)   then: .arm-emulator/bin/python3 check.py
# ARM_EMULATOR_DIR: where to build (default: .arm-emulator in the repository root); downloads are
# cached in "$ARM_EMULATOR_DIR.cache". The build is made in a temporary sibling and renamed into
# place only after its self-check passed; its STAMP names the pins below, and a rerun with the same
# pins does nothing.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=$(realpath -m -- "${ARM_EMULATOR_DIR:-$repo/.arm-emulator}")
cache=$root.cache
cpu=cortex-a76

# ---- pins: change any of these (or RECIPE, for a change in this script) to force a rebuild ----
RECIPE=2
ORT_VERSION=1.32.0
NUMPY_VERSION=2.4.6
# sha256sum lines of the aarch64 wheels. `import onnxruntime` and InferenceSession.run need nothing
# else: flatbuffers, packaging, protobuf and sympy only serve its tools (quantization, transformers).
WHEEL_SUMS="\
2303372a85299b6757b0e11e1cbf13e410ddf7e10c37f4b37e99d1c90e7daf7c  onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_aarch64.whl
0ab0a9c4ffb1a6d95ef519fe4247dba8eb6b18ad93999f76b7f657039acabd47  numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl"
# Debian bookworm arm64: python, its stdlib, and every library that the stdlib's extension modules,
# numpy and onnxruntime load (libtirpc3 and krb5 only serve `nis`, but the stdlib is kept whole).
DEBS=(python3.11-minimal libpython3.11-minimal libpython3.11-stdlib
      libc6 libgcc-s1 libstdc++6 zlib1g libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5
      libsqlite3-0 libuuid1 libncursesw6 libtinfo6 libreadline8 libcrypt1 libdb5.3
      libnsl2 libtirpc3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libcom-err2 libkrb5support0 libkeyutils1)
STAMP="arm-emulator recipe=$RECIPE debian-bookworm-arm64 python3.11 onnxruntime==$ORT_VERSION numpy==$NUMPY_VERSION cpu=$cpu"

log() { echo "arm emulator: $*" >&2; }
die() { echo "arm emulator: ERROR: $*" >&2; exit 1; }
# Finished with these pins, and qemu still installed (step 1 reinstalls it otherwise).
is_built() { [[ -f $root/STAMP && $(head -n1 "$root/STAMP") == "$STAMP" ]] && command -v qemu-aarch64-static >/dev/null; }
done_here() { echo "arm emulator: $root/bin/python3"; exit 0; }

if is_built; then log "up to date ($STAMP)"; done_here; fi

# ---- 1. qemu-user ----
if ! command -v qemu-aarch64-static >/dev/null; then
    [[ $EUID -eq 0 ]] || { echo "arm emulator: qemu-aarch64-static not found; as root run:" \
        "apt-get install qemu-user-static" >&2; exit 2; }
    log "installing qemu-user-static"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static >/dev/null
fi
qemu_dir=$(dirname "$(command -v qemu-aarch64-static)")

# One build at a time; a build that was killed (even by SIGKILL) left only a *.tmp.* folder.
mkdir -p "$cache" && exec 9>"$cache/lock" && flock 9
if is_built; then log "built by a concurrent run"; done_here; fi
rm -rf "$root".tmp.*
tmp=$(mktemp -d "$root.tmp.XXXXXX") && chmod 755 "$tmp"  # mktemp makes it 0700
trap 'rm -rf "$tmp"' EXIT && trap 'exit 130' INT TERM HUP
sys=$tmp/sysroot

# ---- 2. arm64 .debs from Debian, unpacked into the sysroot ----
# apt runs with its own state in the cache: the host's dpkg architectures and package lists stay
# untouched, and no root is needed for this step. The set is fetched whole so that its versions agree.
if [[ ! -f $cache/debs/COMPLETE ]]; then
    log "fetching ${#DEBS[@]} arm64 packages from Debian"
    apt_opts=(-qq -o APT::Architecture=arm64 -o APT::Architectures=arm64
              -o Dir::State::Lists="$cache/apt/lists" -o Dir::State::status="$cache/apt/status"
              -o Dir::Cache="$cache/apt/cache" -o APT::Sandbox::User="$(id -un)")
    mkdir -p "$cache/apt/lists/partial" "$cache/apt/cache/archives/partial"
    touch "$cache/apt/status" && apt-get "${apt_opts[@]}" update
    rm -rf "$cache/debs.part" && mkdir "$cache/debs.part"
    (cd "$cache/debs.part" && apt-get "${apt_opts[@]}" download "${DEBS[@]/%/:arm64}")
    touch "$cache/debs.part/COMPLETE" && rm -rf "$cache/debs" && mv "$cache/debs.part" "$cache/debs"
fi
log "unpacking the sysroot"
for deb in "$cache"/debs/*.deb; do dpkg-deb -x "$deb" "$sys"; done
# Absolute links (sitecustomize.py -> /etc/python3.11/...) would lead into the host's files.
find "$sys" -type l -lname '/*' -delete

# ---- 3. an ARM /proc/cpuinfo ----
# qemu 7.2 passes the host's x86 /proc/cpuinfo through, and onnxruntime's CPU detection segfaults
# on it at import. qemu looks up every path under the -L prefix first, so this file wins.
mkdir -p "$sys/proc"
for i in 0 1 2 3; do
    printf 'processor\t: %d\nBogoMIPS\t: 50.00\n' "$i"
    printf 'Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs\n'
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n'
done >"$sys/proc/cpuinfo"

# ---- 4. the wheels, pinned and checked ----
wheels_ok() { (cd "$1" && sha256sum --quiet --strict -c - <<<"$WHEEL_SUMS"); }
if ! wheels_ok "$cache/wheels" &>/dev/null; then
    log "downloading onnxruntime $ORT_VERSION and numpy $NUMPY_VERSION (aarch64 wheels)"
    command -v python3 >/dev/null || die "a host python3 with pip is needed to download the wheels"
    rm -rf "$cache/wheels.part"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
        --abi cp311 --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 \
        --platform manylinux2014_aarch64 -d "$cache/wheels.part" \
        "onnxruntime==$ORT_VERSION" "numpy==$NUMPY_VERSION"
    wheels_ok "$cache/wheels.part" || die "downloaded wheels do not match the pinned sha256 (see above)"
    rm -rf "$cache/wheels" && mv "$cache/wheels.part" "$cache/wheels"
fi
mkdir -p "$tmp/site-packages"
while read -r _ wheel; do
    python3 -m zipfile -e "$cache/wheels/$wheel" "$tmp/site-packages/"
done <<<"$WHEEL_SUMS"

# ---- 5. the wrapper: POSIX sh, finds everything relative to itself, so the folder can move ----
mkdir -p "$tmp/bin"
cat >"$tmp/bin/python3" <<EOF
#!/bin/sh
# aarch64 Python 3.11 under qemu-user ($STAMP).
# Built by scripts/arm-emulator.sh; for correctness checks only, never timing.
self=\$(readlink -f -- "\$0" 2>/dev/null) || self=\$0
here=\$(CDPATH='' cd -- "\$(dirname -- "\$self")/.." && pwd -P) || exit 127
sys=\$here/sysroot
qemu=\$(command -v qemu-aarch64-static) || qemu=/usr/bin/qemu-aarch64-static
# Keep the host's Python and loader settings (x86 packages and libraries) out of the guest.
unset PYTHONHOME LD_LIBRARY_PATH LD_PRELOAD
export PYTHONNOUSERSITE=1 PYTHONPATH="\$here/site-packages\${PYTHONPATH:+:\$PYTHONPATH}"
# Tells deformer-bench's runner it runs emulated (its records say emulated: true, with no speed figure).
export DEFORMER_BENCH_EMULATOR="qemu-user $cpu"
exec "\$qemu" -L "\$sys" -cpu $cpu "\$sys/usr/bin/python3.11" "\$@"
EOF
chmod 755 "$tmp/bin/python3"

# ---- 6. self-check: from another directory, with an almost empty environment, script on stdin ----
# The check model (Y = X @ W + B) is encoded in plain protobuf by the guest itself, so nothing on
# the host (no venv, no onnx package) is needed.
log "self-check (a few seconds under emulation)"
if ! check=$(cd / && env -i PATH="$qemu_dir:/usr/bin:/bin" "$tmp/bin/python3" - 2>&1 <<'EOF'
import platform, numpy, onnxruntime
print(platform.machine(), numpy.__version__, onnxruntime.__version__, onnxruntime.get_available_providers())
assert platform.machine() == "aarch64", "the interpreter is not running as aarch64"
np = numpy
def varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)
def field(num, value):  # one protobuf field: int as varint, str/bytes length-delimited
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    value = value.encode() if isinstance(value, str) else value
    return varint(num << 3 | 2) + varint(len(value)) + value
FLOAT = 1
def tensor(name, a):  # TensorProto: dims=1 data_type=2 name=8 raw_data=9
    return b"".join(field(1, d) for d in a.shape) + field(2, FLOAT) + field(8, name) + field(9, a.astype("<f4").tobytes())
def value_info(name, shape):  # ValueInfoProto{name=1, type=2{tensor_type=1{elem_type=1, shape=2{dim=1{dim_value=1}}}}}
    dims = b"".join(field(1, field(1, d)) for d in shape)
    return field(1, name) + field(2, field(1, field(1, FLOAT) + field(2, dims)))
def node(op, inputs, outputs):  # NodeProto: input=1 output=2 op_type=4
    return b"".join(field(1, i) for i in inputs) + b"".join(field(2, o) for o in outputs) + field(4, op)
rng = np.random.default_rng(0)
x = rng.standard_normal((16, 64), dtype=np.float32)
w = rng.standard_normal((64, 32), dtype=np.float32) / 8
b = rng.standard_normal(32, dtype=np.float32)
graph = (field(1, node("MatMul", ["x", "w"], ["xw"])) + field(1, node("Add", ["xw", "b"], ["y"]))
         + field(2, "selfcheck") + field(5, tensor("w", w)) + field(5, tensor("b", b))
         + field(11, value_info("x", x.shape)) + field(12, value_info("y", (16, 32))))
model = field(1, 8) + field(7, graph) + field(8, field(2, 17))  # ModelProto: ir_version(1)=8 graph(7) opset_import(8){version(2)=17}
(y,) = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
err = float(np.abs(y - (x @ w + b)).max())
print("MatMul+Add %s, max abs diff onnxruntime vs numpy: %.3g" % (y.shape, err))
assert err < 1e-5, "onnxruntime and numpy disagree"
EOF
); then
    echo "$check" >&2
    die "self-check failed; nothing was installed (downloads stay cached in $cache)"
fi
echo "$check" | sed 's/^/arm emulator: self-check: /' >&2

# ---- 7. stamp, then rename into place ----
{
    echo "$STAMP"
    for deb in "$cache"/debs/*.deb; do dpkg-deb --showformat='${Package}=${Version}\n' -W "$deb"; done
    cut -d' ' -f3 <<<"$WHEEL_SUMS"
} >"$tmp/STAMP"
if [[ -e $root ]]; then mv "$root" "$tmp.old"; fi  # a stale build with other pins
mv "$tmp" "$root" && rm -rf "$tmp.old"
log "built in ${SECONDS}s, $(du -sh "$root" | cut -f1)"
done_here
