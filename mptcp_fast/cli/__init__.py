"""The ``mptcp-fast`` command: ``main`` (the entry point, ``decode``, ``analyze`` and ``demo``)
and ``net`` (``serve``, ``connect`` and ``proxy``)."""

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with every option's default: argparse's "(default: ...)" appended, unless the
    help text already says what the default is (a default computed at run time, such as the
    system's accept queue, is written out in the text instead of printed as None) or the option
    is required."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.required:
            return text
        return super()._get_help_string(action)


def size_bar(total: int, desc: str):
    """A progress bar on stderr for ``total`` bytes (tqdm; gone once closed), in binary units:
    sizes are given in them (16M = 16 MiB), so they are shown in the same ones."""
    from tqdm import tqdm
    return tqdm(total=total, unit="iB", unit_scale=True, unit_divisor=1024, desc=desc,
                leave=False)


def count_bar(total: int, desc: str, unit: str):
    """A progress bar on stderr for ``total`` things done one by one (figures drawn: tqdm;
    gone once closed)."""
    from tqdm import tqdm
    return tqdm(total=total, unit=f" {unit}", desc=desc, leave=False)
