"""Shards of one study share its `out`; on a network filesystem that is refused, with the fix."""

from __future__ import annotations

import pytest
import yaml
from conftest import study_dict, w2s

from harness.preflight import filesystem_type

TABLE = """\
/dev/sda1 / ext4 rw,relatime 0 0
server:/export /mnt/shared nfs4 rw,relatime,vers=4.2 0 0
/dev/sdb1 /mnt/shared/scratch xfs rw 0 0
//nas/runs /mnt/with\\040space cifs rw 0 0
tmpfs /mnt/shared/over tmpfs rw 0 0
server:/other /mnt/shared/over nfs rw 0 0
"""


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/home/me/runs", "ext4"),
        ("/mnt/shared", "nfs4"),
        ("/mnt/shared/study/runs", "nfs4"),  # not there: the filesystem it would be created on
        ("/mnt/shared/scratch/runs", "xfs"),  # the deepest mount holding the path
        ("/mnt/with space/runs", "cifs"),  # the table escapes spaces as \040
        ("/mnt/shared/over/runs", "nfs"),  # a later mount on the same point shadows the earlier one
    ],
)
def test_the_filesystem_of_a_path_is_the_deepest_mount_holding_it(tmp_path, path, kind):
    (tmp_path / "mounts").write_text(TABLE)
    assert filesystem_type(path, tmp_path / "mounts") == kind


def test_this_machines_mount_table_is_read():
    assert filesystem_type("/") is not None


def test_sharding_onto_a_network_filesystem_is_refused_and_one_process_is_not(
    zoo, gold_paths, data_dir, capsys, monkeypatch
):
    out = data_dir / "runs"
    (data_dir / "mounts").write_text(f"/dev/sda1 / ext4 rw 0 0\nserver:/export {data_dir} nfs4 rw 0 0\n")
    monkeypatch.setattr("harness.preflight.MOUNTS", data_dir / "mounts")
    config = data_dir / "study.yaml"
    config.write_text(yaml.safe_dump(study_dict(zoo, gold_paths, data_dir)))
    code, _, err = w2s(capsys, "run", str(config), "--shard", "0/2", "--dry-run")
    assert code == 2 and err.count("\n") == 1
    assert f"--shard 0/2 with out {str(out)!r} on a network filesystem (nfs4) is refused" in err
    assert "give each machine an `out` on its local disk" in err
    assert not out.exists()
    code, _, err = w2s(capsys, "run", str(config), "--dry-run")  # one process: its locks and cache are its own
    assert code == 0, err
