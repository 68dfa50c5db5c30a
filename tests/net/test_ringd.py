"""ringd's settings (flags over env over TOML, cluster defaults) and its process life: the ready
line, a clean SIGTERM, and the exit codes for a locked data directory and a taken port."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ring
from ring.cli.ringd import ConfigError, advertised, load_settings


def test_flags_win_over_env_which_wins_over_toml(tmp_path: Path) -> None:
    toml = tmp_path / "node.toml"
    toml.write_text(
        'name = "from-toml"\ndata = "/toml"\nseeds = ["s1:1", "s2:2"]\nn = 5\ncluster = "t"\n'
        "request_timeout_ms = 900\nsync = true\n"
    )
    env = {"RINGKV_NAME": "from-env", "RINGKV_N": "4", "RINGKV_CONFIG": str(toml)}
    s = load_settings(["--n", "3", "--listen", "0.0.0.0:0"], env)
    assert (s.name, s.data, s.n, s.r, s.w) == ("from-env", "/toml", 3, 2, 2)
    assert s.seeds == ("s1:1", "s2:2") and s.cluster == "t" and s.sync
    assert s.request_timeout_ms == 900 and s.listen == "0.0.0.0:0"
    s = load_settings(["--name", "flag", "--seeds", "x:1,y:2", "--config", str(toml)], env)
    assert s.name == "flag" and s.seeds == ("x:1", "y:2") and s.n == 4 and s.r == 3


def test_cluster_defaults_are_the_same_with_and_without_seeds() -> None:
    # A seed started alone must agree on N with the nodes that join it (it still serves alone:
    # the node caps the default R and W by the replicas that exist).
    alone = load_settings(["--name", "a", "--data", "d"], {})
    assert (alone.n, alone.r, alone.w, alone.listen) == (3, 2, 2, "127.0.0.1:7070")
    joined = load_settings(["--name", "b", "--data", "d", "--seeds", "a:7070"], {})
    assert (joined.n, joined.r, joined.w) == (3, 2, 2)
    explicit = load_settings(["--name", "a", "--data", "d", "--n", "3", "--w", "3"], {})
    assert (explicit.n, explicit.r, explicit.w) == (3, 2, 3)


@pytest.mark.parametrize(
    "argv, why",
    [
        (["--data", "d"], "--name is required"),
        (["--name", "a"], "--data is required"),
        (["--name", "a", "--data", "d", "--r", "4"], "R, W <= N"),
        (["--name", "a", "--data", "d", "--n", "x"], "--n"),
        (["--name", "a", "--data", "d", "--listen", "nohost"], "host:port"),
        (["--name", "a", "--data", "d", "--log-level", "loud"], "log_level"),
    ],
)
def test_bad_settings_say_what_is_wrong(argv: list[str], why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        load_settings(argv, {})


def test_unknown_toml_keys_are_refused(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text('name = "a"\nreplicas = 3\n')
    with pytest.raises(ConfigError, match="replicas"):
        load_settings(["--config", str(toml)], {})


def test_advertised_address() -> None:
    s = load_settings(["--name", "a", "--data", "d"], {})
    assert advertised(s, "127.0.0.1", 7001) == "127.0.0.1:7001"
    with_name = load_settings(["--name", "a", "--data", "d", "--advertise", "node1"], {})
    assert advertised(with_name, "0.0.0.0", 7001) == "node1:7001"
    with_port = load_settings(["--name", "a", "--data", "d", "--advertise", "node1:7070"], {})
    assert advertised(with_port, "0.0.0.0", 7001) == "node1:7070"


def _ringd(*args: str, out: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "ring.cli.ringd", *args]
    with open(out, "wb") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)


def test_ringd_serves_stops_on_sigterm_and_reports_startup_errors(tmp_path: Path) -> None:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        first = _ringd(
            "--name",
            "solo",
            "--listen",
            "127.0.0.1:0",
            "--data",
            str(tmp_path / "d"),
            "--new-cluster",
            out=tmp_path / "solo.out",
        )
        procs.append(first)
        deadline = time.monotonic() + 15
        while "listening on" not in (text := (tmp_path / "solo.out").read_text()):
            assert first.poll() is None and time.monotonic() < deadline, text
            time.sleep(0.02)
        address = text.split("listening on ")[1].split()[0]
        with ring.connect(address) as client:
            client.put("k", "v")
            assert client.get("k") == b"v" and client.node == "solo"
        locked = _ringd(
            "--name",
            "two",
            "--listen",
            "127.0.0.1:0",
            "--data",
            str(tmp_path / "d"),
            out=tmp_path / "locked.out",
        )
        procs.append(locked)
        assert locked.wait(15) == 4
        assert "is locked" in (tmp_path / "locked.out").read_text()
        taken = _ringd(
            "--name",
            "three",
            "--listen",
            address,
            "--data",
            str(tmp_path / "e"),
            "--new-cluster",
            out=tmp_path / "taken.out",
        )
        procs.append(taken)
        assert taken.wait(15) == 5
        assert "cannot listen" in (tmp_path / "taken.out").read_text()
        first.send_signal(signal.SIGTERM)
        assert first.wait(15) == 0
        assert "stopped" in (tmp_path / "solo.out").read_text()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _wait_for(proc: subprocess.Popen[bytes], out: Path, text: str) -> str:
    deadline = time.monotonic() + 15
    while text not in (got := out.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, got
        time.sleep(0.02)
    return got


def test_an_empty_node_with_neither_seeds_nor_new_cluster_refuses_to_start(
    tmp_path: Path,
) -> None:
    proc = _ringd(
        "--name",
        "x",
        "--listen",
        "127.0.0.1:0",
        "--data",
        str(tmp_path / "d"),
        out=tmp_path / "x.out",
    )
    assert proc.wait(15) == 2
    assert (
        "give --seeds to join a cluster or --new-cluster to found one"
        in (tmp_path / "x.out").read_text()
    )
    assert not (tmp_path / "d").exists()  # nothing was created


def test_a_node_with_other_settings_is_refused_and_stops(tmp_path: Path) -> None:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        seed = _ringd(
            "--name",
            "s",
            "--listen",
            "127.0.0.1:0",
            "--data",
            str(tmp_path / "s"),
            "--new-cluster",
            out=tmp_path / "s.out",
        )
        procs.append(seed)
        text = _wait_for(seed, tmp_path / "s.out", "ringd s serving")
        address = text.split("listening on ")[1].split()[0]
        other = _ringd(
            "--name",
            "o",
            "--listen",
            "127.0.0.1:0",
            "--data",
            str(tmp_path / "o"),
            "--seeds",
            address,
            "--n",
            "5",
            out=tmp_path / "o.out",
        )
        procs.append(other)
        assert other.wait(15) == 2
        log = (tmp_path / "o.out").read_text()
        assert "s refused to let o join: n is 3 on s but 5 on o" in log
        with ring.connect(address) as client:  # the cluster did not let it in
            assert [m["name"] for m in client.status()["members"]] == ["s"]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_node_that_cannot_reach_its_cluster_says_it_is_joining(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nobody:  # a seed that never answers
        nobody.bind(("127.0.0.1", 0))
        seed = f"127.0.0.1:{nobody.getsockname()[1]}"
        proc = _ringd(
            "--name",
            "j",
            "--listen",
            "127.0.0.1:0",
            "--data",
            str(tmp_path / "j"),
            "--seeds",
            seed,
            out=tmp_path / "j.out",
        )
        try:
            text = _wait_for(proc, tmp_path / "j.out", "listening on")
            address = text.split("listening on ")[1].split()[0]
            with ring.connect(address) as client:
                status = client.status()
                assert status["serving"] is False and "serving member" in status["waiting_for"]
                assert status["members"][0]["state"] == "joining"
                with pytest.raises(ring.Unavailable, match="does not serve yet"):
                    client.put("k", "v")
            check = subprocess.run(
                [sys.executable, "-m", "ring.cli.ringctl", "--nodes", address, "status", "--check"],
                capture_output=True,
                text=True,
            )
            assert check.returncode == 5 and "does not serve yet" in check.stderr
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
