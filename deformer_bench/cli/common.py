"""What every CLI shares: typed errors become one message and exit code 2, never a traceback."""

import sys

from ..errors import DeformerBenchError

EXIT_USAGE = 2


def run_cli(main_function, argv=None) -> int:
    try:
        return main_function(argv) or 0
    except DeformerBenchError as error:
        print(f"error: {error.message}", file=sys.stderr)
        if error.hint:
            print(f"  fix: {error.hint}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130


def parse_int_list(text: str, what: str) -> list:
    from ..errors import ConfigError

    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated integers, got {text!r}", f"e.g. --{what} 1,2,3") from None
    if not values:
        raise ConfigError(f"no {what} given", f"e.g. --{what} 1,2,3")
    return values
