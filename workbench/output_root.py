"""The output root's spelling, checked before anything runs: a local folder or gs://BUCKET/PREFIX, nothing else.

A typo must not turn into a folder: `gs:/bucket` is a valid relative path (./gs:/bucket), and so is `~/out`
when the shell did not expand it (`--output-root=~/out`: the shell expands ~ only at the start of a word). Both
would quietly write locally, and reconcile, given the same typo, would read the same wrong place and agree.

    check_output_root("gs:/bucket")          # OutputRootError: ... write gs://bucket
    check_output_root("./output")            # "./output"

On the command line: `@click.option("--output-root", callback=output_root_option, ...)`.
"""

from __future__ import annotations

import re

import click

from endpoints.errors import FixableError

# A leading "scheme:" (RFC 3986 letters) with its slashes; a local path that merely contains a colon later on
# (./run:1, out/a:b) does not match.
_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):(?P<slashes>/*)(?P<rest>.*)", re.DOTALL)
# Misspellings of Cloud Storage's scheme seen in the wild (gsutil's is gs://, Beam's too).
_GCS_TYPOS = frozenset({"gs", "gcs", "gc", "gsc", "sg", "g", "gcp", "google", "storage"})
_NAMES = {"s3": "an S3 URL", "file": "a file URL", "hdfs": "an HDFS URL", "azfs": "an Azure URL"}


class OutputRootError(FixableError, ValueError):
    """An output root that would not write where the user meant: `message` says why, `fix` what to write."""


def check_output_root(value: str, option: str = "--output-root") -> str:
    """`value` unchanged when it is a local folder or gs://BUCKET[/PREFIX]; OutputRootError (with the fix) else."""
    if not value.strip():
        raise OutputRootError(f"{option} is empty", f"name a folder, e.g. {option} ./output")
    if value.startswith("~"):
        user, _, rest = value.partition("/")
        spelled = f" or {option} {'$HOME/' + rest if rest else '$HOME'}" if user == "~" else ""
        raise OutputRootError(
            f"~ is not expanded inside {option}={value} (a shell expands ~ only at the start of a word): it would "
            f"create a folder named {user}",
            f"write {option} {value} (with a space){spelled}",
        )
    match = _SCHEME.fullmatch(value)
    if match is None:
        return value
    scheme, slashes, rest = match["scheme"], match["slashes"], match["rest"]
    lower = scheme.lower()
    if scheme == "gs" and slashes == "//":
        if not rest or rest.startswith("/"):
            raise OutputRootError(f"{value} names no bucket", f"write {option} gs://BUCKET/PREFIX")
        return value
    if lower in _GCS_TYPOS:
        if slashes == "//":  # Beam refuses an unknown scheme (late, in a traceback); say it now
            why = f"{value}: {scheme}:// is not a scheme Beam knows (Cloud Storage is gs://)"
        elif lower == "gs" and len(slashes) > 2:
            why = f"{value} looks like a GCS URL with {_slashes(slashes)}: the bucket name would be empty"
        elif lower == "gs":
            why = f"{value} looks like a GCS URL with {_slashes(slashes)}: it would be written as a local folder"
        else:
            why = f"{value} looks like a misspelt GCS URL: it would be written as a local folder"
        raise OutputRootError(why, f"write {option} gs://{rest.lstrip('/')}")
    what = _NAMES.get(lower, f"a URL (scheme {scheme})")
    if lower == "file":
        raise OutputRootError(
            f"{value} is {what}: the output root is a plain folder", f"write {option} /{rest.lstrip('/')}"
        )
    local = f", or {option} ./{value} for a local folder with a colon in its name" if not slashes else ""
    raise OutputRootError(
        f"{value} looks like {what}: the pipeline writes to a local folder or to Cloud Storage (gs://) only",
        f"write {option} gs://BUCKET/PREFIX{local}",
    )


def _slashes(slashes: str) -> str:
    return {0: "no slash", 1: "one slash"}.get(len(slashes), f"{len(slashes)} slashes")


def output_root_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """click callback: a misspelt output root is a usage error (exit 2) before the command starts anything."""
    if value is None:
        return None
    try:
        return check_output_root(value, _flag(param))
    except OutputRootError as exc:
        raise click.BadParameter(f"{exc.message}; {exc.fix}", ctx=ctx, param=param) from None


def _flag(param: click.Parameter) -> str:
    return max(param.opts, key=len) if param.opts else f"--{param.name}"
