"""``shequn cluster up|down|status`` runs deploy/cluster.sh with its options as the script's environment
(the script itself is exercised by tests/faults/test_replica.py)."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from shequn.core.management.commands.cluster import SCRIPT


def test_the_command_wraps_the_deploy_script(tmp_path, capfd):
    assert SCRIPT.is_file() and SCRIPT.name == "cluster.sh"
    fake = tmp_path / "cluster.sh"
    fake.write_text('echo "action=$1 name=$NAME web=$WEB workers=$WORKERS redis=$REDIS_URL '
                    'db=${SHEQUN_DATABASE_URL:-}"\n')
    call_command("cluster", "status", "--script", str(fake), "--name", "c1", "--web", "3", "--workers", "1",
                 "--redis-url", "redis://127.0.0.1:6379/5")
    assert capfd.readouterr().out.strip() == "action=status name=c1 web=3 workers=1 redis=redis://127.0.0.1:6379/5 db="


def test_a_failing_script_or_a_missing_one_is_an_error(tmp_path):
    fake = tmp_path / "cluster.sh"
    fake.write_text("exit 3\n")
    with pytest.raises(CommandError, match="exited 3"):
        call_command("cluster", "down", "--script", str(fake))
    with pytest.raises(CommandError, match="not found"):
        call_command("cluster", "up", "--script", str(tmp_path / "none.sh"))
