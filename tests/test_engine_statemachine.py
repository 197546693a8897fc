"""A hypothesis state machine drives a client and a server engine through random
sequences of sends, closes, path failures and recoveries, loss, an address that goes and comes
back, and time passing. At every step each side has received a prefix of what the other sent,
in order and once; at the end, with the network healed, every byte has arrived, or the
connection says why not."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from enginenet import C0, C1, PORT, S0
from mptcp_fast.engine import Config, Endpoint, events as ev
from mptcp_fast.sim.netem import Network


class RecordingApp:
    """An Endpoint as a netem host whose received data is kept (per connection)."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.received = {}
        self.eof = set()
        self.terminated = {}

    def receive_packet(self, data, now):
        self.endpoint.receive_packet(data, now)
        self._events()

    def packets_to_send(self, now):
        return self.endpoint.packets_to_send(now)

    def get_timer(self):
        return self.endpoint.get_timer()

    def handle_timer(self, now):
        self.endpoint.handle_timer(now)
        self._events()

    def _events(self):
        while (e := self.endpoint.next_event()) is not None:
            if type(e) is ev.DataReceived:
                self.received.setdefault(e.connection, bytearray()).extend(e.data)
            elif type(e) is ev.EndOfStream:
                self.eof.add(e.connection)
            elif type(e) is ev.ConnectionTerminated:
                self.terminated[e.connection] = e.reason


class EngineMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        config = Config(time_wait=0.2, max_retransmits=6, receive_window=256 * 1024,
                        send_buffer=512 * 1024)
        self.net = Network(seed=5)
        self.client = RecordingApp(Endpoint([C0, C1], config))
        self.server = RecordingApp(Endpoint([S0], config))
        self.server.endpoint.listen(PORT)
        self.net.add_host(self.client, [C0, C1])
        self.net.add_host(self.server, [S0])
        self.paths = [self.net.add_path(C0, S0, rate=20e6, delay=0.005, queue=128 * 1024),
                      self.net.add_path(C1, S0, rate=10e6, delay=0.015, queue=128 * 1024)]
        self.conn = self.client.endpoint.connect((S0, PORT), 0.0)
        self.net.run(until=0.5)
        self.server_conn = next(iter(self.server.endpoint.connections.values()))
        self.up, self.down = bytearray(), bytearray()
        self.closed_up = self.closed_down = False
        self.counter = 0

    def _payload(self, n):
        self.counter += 1
        return bytes((self.counter * 131 + i) & 0xFF for i in range(n))

    def _advance(self, seconds):
        self.net.run(until=self.net.now + seconds)

    @precondition(lambda self: not self.closed_up and not self.conn.terminated)
    @rule(n=st.integers(1, 200_000))
    def client_sends(self, n):
        data = self._payload(n)
        taken = self.conn.send(data)
        self.up += data[:taken]
        self.net.wake(self.client)

    @precondition(lambda self: not self.closed_down and not self.server_conn.terminated)
    @rule(n=st.integers(1, 200_000))
    def server_sends(self, n):
        data = self._payload(n)
        taken = self.server_conn.send(data)
        self.down += data[:taken]
        self.net.wake(self.server)

    @precondition(lambda self: not self.closed_up and not self.conn.terminated)
    @rule()
    def client_closes(self):
        self.conn.close()
        self.closed_up = True
        self.net.wake(self.client)

    @precondition(lambda self: not self.closed_down and not self.server_conn.terminated)
    @rule()
    def server_closes(self):
        self.server_conn.close()
        self.closed_down = True
        self.net.wake(self.server)

    @rule(path=st.integers(0, 1), up=st.booleans())
    def path_changes(self, path, up):
        self.paths[path]._set(up)

    @rule(path=st.integers(0, 1), loss=st.sampled_from([0.0, 0.01, 0.05]))
    def loss_changes(self, path, loss):
        self.paths[path].loss = loss

    @rule()
    def second_address_flaps(self):
        ep = self.client.endpoint
        if bytes([198, 18, 1, 1]) in ep.addresses:
            ep.remove_address(C1)
        else:
            ep.add_address(C1)
        self.net.wake(self.client)

    @rule(seconds=st.sampled_from([0.01, 0.1, 0.5, 2.0]))
    def time_passes(self, seconds):
        self._advance(seconds)

    @invariant()
    def each_side_has_a_prefix_of_what_the_other_sent(self):
        got_up = self.server.received.get(self.server_conn.id, b"")
        got_down = self.client.received.get(self.conn.id, b"")
        assert self.up[:len(got_up)] == got_up
        assert self.down[:len(got_down)] == got_down

    def teardown(self):
        for p in self.paths:
            p._set(True)
            p.loss = 0.0
        ep = self.client.endpoint
        if bytes([198, 18, 1, 1]) not in ep.addresses:
            ep.add_address(C1)
        for conn, app in ((self.conn, self.client), (self.server_conn, self.server)):
            if not conn.terminated and not conn.local_closed:
                conn.close()
            self.net.wake(app)
        self.net.run(until=self.net.now + 300.0,
                     stop=lambda: (self.conn.terminated is not None
                                   and self.server_conn.terminated is not None))
        got_up = bytes(self.server.received.get(self.server_conn.id, b""))
        got_down = bytes(self.client.received.get(self.conn.id, b""))
        if self.conn.terminated == "closed" and self.server_conn.terminated == "closed":
            assert got_up == self.up and got_down == self.down
            assert self.server_conn.id in self.server.eof and self.conn.id in self.client.eof
        else:                                   # it says why, and nothing wrong arrived
            assert {self.conn.terminated, self.server_conn.terminated} - {"closed"} <= \
                {"timeout", "reset", "fastclose"}
            assert self.up[:len(got_up)] == got_up and self.down[:len(got_down)] == got_down


EXAMPLES = int(os.environ.get("MPTCP_FAST_STATE_EXAMPLES", "30"))
EngineMachine.TestCase.settings = settings(max_examples=EXAMPLES, stateful_step_count=40,
                                           deadline=None, database=None,
                                           suppress_health_check=list(HealthCheck))
test_engine_state_machine = EngineMachine.TestCase
