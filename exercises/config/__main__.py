"""Print the settings a service would start with: ``python -m reference_app.config``.

Secrets are masked. A broken configuration prints one line naming the variable and exits with status 2,
which is what every service of the messenger does at start-up.
"""

import sys

import yaml

from .settings import ConfigError, load_settings


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    print(yaml.safe_dump(settings.public_view(), sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
