"""Consent to a download: nothing is fetched from the hub unless the user agreed to its size."""

from __future__ import annotations

from collections.abc import Callable

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.install.options import InstallOptions
from lofi_daemon.install.plan import InstallPlan
from lofi_daemon.install.progress import format_bytes

#: Asked with the plan before anything is downloaded; True = go ahead.
ConfirmFn = Callable[[InstallPlan], bool]


def ask_consent(plan: InstallPlan, options: InstallOptions, confirm: ConfirmFn | None) -> None:
    """Return when the plan may go ahead: nothing to download, ``--yes``, or ``confirm`` agreed.

    Raises:
        LofiError: SETUP_FAILED when there is no one to ask (``download_bytes`` in its data) or
            the download was declined.
    """
    if plan.source != "hub" or plan.remaining_bytes == 0 or options.assume_yes:
        return
    size = format_bytes(plan.remaining_bytes)
    if confirm is None:
        raise LofiError(
            errors.SETUP_FAILED,
            f"downloading {size} from {options.hub_url()}/{plan.repo_id} needs your consent "
            "and there is no terminal to ask",
            remedy="Rerun with --yes to agree to the download "
            f"(or use :Lofi setup {options.backend}).",
            data={"download_bytes": plan.remaining_bytes},
        )
    if not confirm(plan):
        raise LofiError(
            errors.SETUP_FAILED,
            f"the download of {size} was declined; nothing was downloaded",
            remedy="Run the setup again and accept the download, or pass --checkpoint DIR.",
        )
