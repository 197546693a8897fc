"""Long fuzz runs of the option codec (not in the default run): `python -m pytest -m fuzz`.

MPTCP_FAST_FUZZ_EXAMPLES sets the number of examples per test (default 200000,
a few minutes on 2 cores). Each example checks that both backends give the same
value or the same error, and that nothing but OptionError ever escapes.
"""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mptcp_fast import OptionError, _backend, options
from strategies import mptcp_like_bytes

EXAMPLES = int(os.environ.get("MPTCP_FAST_FUZZ_EXAMPLES", "200000"))
fuzz_settings = settings(max_examples=EXAMPLES, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))

pytestmark = pytest.mark.fuzz


def outcome_on(backend_name, call):
    with _backend.use(backend_name):
        try:
            return call()
        except OptionError as exc:
            return ("OptionError", str(exc))


@fuzz_settings
@given(data=st.binary(max_size=64) | mptcp_like_bytes,
       segment=st.none() | st.sampled_from(list(options.Segment)))
def test_fuzz_parse_option_and_area(data, segment):
    for call in (lambda: options.parse_option(data, segment),
                 lambda: options.parse_tcp_options(data, segment),
                 lambda: options.parse_tcp_options(data, segment, keep_malformed=True)):
        results = [outcome_on(name, call) for name in _backend.available()]
        assert all(r == results[0] for r in results)
