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
