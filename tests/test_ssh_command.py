"""Parsing the ssh command lines GPU providers print (hfsync.remote.sshcmd)."""

from __future__ import annotations

import pytest

from hfsync.errors import UsageError
from hfsync.remote.connection import quote_command, remote_shell_quote
from hfsync.remote.sshcmd import SSHSpec, parse_ssh_command


def test_vast_ai_command_with_port_forward() -> None:
    spec = parse_ssh_command("ssh -p 41234 root@ssh4.vast.ai -L 8080:localhost:8080")
    assert (spec.user, spec.host, spec.port) == ("root", "ssh4.vast.ai", 41234)
    assert spec.display == "root@ssh4.vast.ai:41234"
    assert any("-L 8080:localhost:8080" in n and "ignored" in n for n in spec.notes)


def test_runpod_command_options_after_destination() -> None:
    spec = parse_ssh_command("ssh root@1.2.3.4 -p 22022 -i ~/.ssh/id_ed25519")
    assert (spec.user, spec.host, spec.port) == ("root", "1.2.3.4", 22022)
    assert spec.identity_files == ("~/.ssh/id_ed25519",)
    assert spec.notes == ()


def test_options_identity_files_and_strict_checking() -> None:
    spec = parse_ssh_command(
        "ssh -i ~/.ssh/key -i other -o StrictHostKeyChecking=no -o 'UserKnownHostsFile /dev/null'"
        " -oConnectTimeout=7 -o ServerAliveInterval=15 -p 22 user@host"
    )
    assert spec.identity_files == ("~/.ssh/key", "other")
    assert spec.options == {
        "stricthostkeychecking": "no",
        "userknownhostsfile": "/dev/null",
        "connecttimeout": "7",
        "serveraliveinterval": "15",
    }
    assert spec.display == "user@host:22"


@pytest.mark.parametrize(
    "command, user, host, port",
    [
        ("user@host", "user", "host", None),
        ("host", None, "host", None),
        ("ssh host", None, "host", None),
        ("/usr/bin/ssh -p2200 -lbob host", "bob", "host", 2200),
        ("ssh -o Port=2201 -o User=amy -p 9 host", "amy", "host", 2201),  # first value wins
        ("ssh -l first second@host", "first", "host", None),
        ("ssh second@host -l first", "second", "host", None),
        ("ssh ssh://u@h.example:2222", "u", "h.example", 2222),
        ("ssh -- u@h", "u", "h", None),
    ],
)
def test_destination_forms(command: str, user: str | None, host: str, port: int | None) -> None:
    spec = parse_ssh_command(command)
    assert (spec.user, spec.host, spec.port) == (user, host, port)


def test_argv_list_is_accepted() -> None:
    assert parse_ssh_command(["ssh", "-p", "22", "r@h"]).port == 22


def test_ipv6_display_and_address_family() -> None:
    spec = parse_ssh_command("ssh -6 -p 2222 root@::1")
    assert spec.host == "::1"
    assert spec.display == "root@[::1]:2222"
    assert spec.options["addressfamily"] == "inet6"


def test_jump_hosts_parsed_first_hop_first() -> None:
    spec = parse_ssh_command("ssh -J alice@bastion:2222,10.0.0.2 root@gpu")
    assert [(j.user, j.host, j.port) for j in spec.jump_hosts] == [
        ("alice", "bastion", 2222),
        (None, "10.0.0.2", None),
    ]
    assert isinstance(spec.jump_hosts[0], SSHSpec)
    assert parse_ssh_command("ssh -J none h").jump_hosts == ()


def test_proxy_command_and_jump_compete_first_wins() -> None:
    spec = parse_ssh_command("ssh -o 'ProxyCommand nc %h %p' -J j h")
    assert spec.options["proxycommand"] == "nc %h %p"
    assert "proxyjump" not in spec.options and spec.jump_hosts == ()


@pytest.mark.parametrize("flag", ["-t", "-tt", "-T", "-N", "-A", "-X", "-v", "-vvv", "-q", "-C"])
def test_session_only_flags_are_ignored_with_a_note(flag: str) -> None:
    spec = parse_ssh_command(f"ssh {flag} -p 2 root@h")
    assert spec.port == 2
    assert spec.notes and all("ignored" in n for n in spec.notes)


@pytest.mark.parametrize("opt", ["-L 1:h:2", "-R 1:h:2", "-D 1080", "-o LogLevel=ERROR"])
def test_session_only_options_with_argument_are_ignored(opt: str) -> None:
    spec = parse_ssh_command(f"ssh {opt} root@h")
    assert spec.host == "h"
    assert len(spec.notes) == 1 and opt.split()[-1] in spec.notes[0]


def test_bundled_flags_with_attached_argument() -> None:
    spec = parse_ssh_command("ssh -4Cp2222 root@h")
    assert spec.port == 2222 and spec.options["addressfamily"] == "inet"


@pytest.mark.parametrize(
    "command, named",
    [
        ("ssh -Z root@h", "-Z"),
        ("ssh -W h:22 root@h", "-W"),
        ("ssh -b 10.0.0.1 root@h", "-b"),
        ("ssh -o Frobnicate=yes root@h", "Frobnicate"),
        ("ssh root@h ls -la", "ls -la"),
        ("ssh -p root@h", "root@h"),
        ("ssh -p 70000 root@h", "70000"),
        ("ssh -p", "-p"),
        ("ssh -o Port root@h", "Port"),
        ("ssh -o ConnectTimeout=soon h", "ConnectTimeout"),
        ("ssh root@h:2222", "-p PORT"),
        ("ssh -p 22", "destination"),
        ("ssh 'root@h;rm'", "root@h;rm"),
        ("ssh 'unbalanced", "cannot parse"),
    ],
)
def test_unsupported_input_is_a_usage_error_naming_it(command: str, named: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_ssh_command(command)
    assert named in str(info.value)
    assert info.value.exit_code == 2


def test_spec_is_frozen() -> None:
    spec = parse_ssh_command("root@h")
    with pytest.raises(AttributeError):
        spec.host = "other"  # type: ignore[misc]


def test_display_never_shows_key_paths_or_proxy_commands() -> None:
    spec = parse_ssh_command("ssh -i /secret/key -o 'ProxyCommand nc x 1' -p 5 root@h")
    assert spec.display == "root@h:5"


def test_remote_quoting() -> None:
    assert remote_shell_quote("/data/my model/x'y") == "'/data/my model/x'\"'\"'y'"
    assert remote_shell_quote("~/models/gpt 2") == "\"$HOME\"/'models/gpt 2'"
    assert remote_shell_quote("~") == '"$HOME"'
    assert quote_command(["mkdir", "-p", "a b", "$(x)"]) == "mkdir -p 'a b' '$(x)'"
