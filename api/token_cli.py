"""``ibstream token``: issue a local HS256 token for development (signed with ``IBSTREAM_API_JWT_SECRET``)."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import timedelta

from api.auth import Role, issue_token
from ibstream.config import get_settings

_TTL = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``8h``, ``7d`` → a positive duration."""
    match = _TTL.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"expected a duration such as 900, 15m, 8h or 7d, got {text!r}")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def main(argv: list[str]) -> int:
    """Print a token to stdout; configuration errors propagate to the CLI, which names the setting."""
    parser = argparse.ArgumentParser(prog="ibstream token", description=__doc__)
    parser.add_argument("--role", required=True, choices=[role.value for role in Role])
    parser.add_argument("--subject", default="dev", help="the token subject, recorded as `actor` on commands")
    parser.add_argument("--ttl", type=parse_ttl, default=timedelta(hours=8), help="lifetime, e.g. 15m, 8h (8h)")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.ttl.total_seconds() > settings.api.jwt_max_lifetime_seconds:
        # The API would refuse it: say so now rather than hand out a token that never works.
        parser.error(
            f"--ttl {args.ttl} exceeds IBSTREAM_API_JWT_MAX_LIFETIME_SECONDS "
            f"({settings.api.jwt_max_lifetime_seconds} s), the longest lifetime the API accepts"
        )
    print(issue_token(settings, Role(args.role), args.subject, args.ttl))
    if sys.stderr.isatty():
        print(f"# {args.role} token for {args.subject!r}, valid {args.ttl}", file=sys.stderr)
    return 0
