"""DisconnectWatcher over real TCP sockets: a hang-up is noticed at once, data or an unwatch is not one."""

from __future__ import annotations

import socket
import threading

import pytest

from app.resilience.disconnects import DisconnectWatcher

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def pair():
    """(server side, client side) of one TCP connection on localhost."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    yield server, client
    server.close()
    client.close()


def test_a_client_hanging_up_is_noticed_at_once(pair):
    server, client = pair
    gone = threading.Event()
    watcher = DisconnectWatcher()
    stop = watcher.watch(server, gone.set)
    assert not gone.wait(0.2)
    client.close()
    assert gone.wait(2.0)
    stop()  # after the fact: harmless


def test_data_from_the_client_is_not_a_hang_up(pair):
    server, client = pair
    gone = threading.Event()
    watcher = DisconnectWatcher()
    watcher.watch(server, gone.set)
    client.sendall(b"GET / HTTP/1.1\r\n")  # a pipelined request: readable, but alive
    assert not gone.wait(0.3)
    assert server.recv(100).startswith(b"GET /")  # and the bytes are still there for the server
    client.close()
    assert not gone.wait(0.3)  # no longer watched once it turned readable with data


def test_an_unwatched_socket_is_left_alone(pair):
    server, client = pair
    gone = threading.Event()
    watcher = DisconnectWatcher()
    stop = watcher.watch(server, gone.set)
    stop()
    client.close()
    assert not gone.wait(0.3)


def test_many_streams_come_and_go_and_only_the_hung_up_one_fires():
    listener = socket.create_server(("127.0.0.1", 0))
    watcher = DisconnectWatcher()
    fired: list[int] = []
    lock = threading.Lock()
    for i in range(50):  # fds are reused as sockets close: the watcher must not confuse them
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        stop = watcher.watch(server, lambda i=i: (lock.acquire(), fired.append(i), lock.release()))
        stop()
        server.close()
        client.close()
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    done = threading.Event()
    watcher.watch(server, done.set)
    client.close()
    assert done.wait(2.0)
    assert fired == []
    server.close()
    listener.close()


def test_no_socket_means_nothing_to_watch():
    assert DisconnectWatcher().watch(None, lambda: None)() is None
