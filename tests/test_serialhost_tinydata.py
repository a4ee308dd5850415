"""The four MLPerf Tiny datasets' label files, read and segmented as the reference runner does.

Formats from mlcommons/tiny benchmark/evaluation/datasets/{ad01,ic01,kws01,vww01}/y_labels.csv
(e.g. ad01: ``normal_id_01_00000003_hist_librosa.bin,2,0,2560,512``; kws01:
``tst_000000_Stop_7.bin,12,7``) and the segmenting of benchmark/runner/script.py.
"""

from __future__ import annotations

import pytest

from edgerun.errors import DutError
from edgerun.serialhost.tinydata import TRUTH_FILE, read_dataset

KINDS = {  # model: (label rows, file size in bytes)
    "ad01": (
        ["normal_id_01_00000003_hist_librosa.bin,2,0,2560,512", "anomaly_id_01_00000000_hist.bin,2,1,2560,512"],
        5120,
    ),
    "ic01": (["emu_s_002009.bin,10,2", "taxi_s_001241.bin,10,1"], 32 * 32 * 3),
    "kws01": (["tst_000000_Stop_7.bin,12,7", "tst_000001_Left_2.bin,12,2"], 490),
    "vww01": (["000000343218.bin,2,1", "000000332570.bin,2,0"], 96 * 96 * 3),
}


@pytest.mark.parametrize("model", sorted(KINDS))
def test_official_label_formats_read_and_segment(tmp_path, model):
    rows, size = KINDS[model]
    folder = tmp_path / model
    folder.mkdir()
    for row in rows:
        (folder / row.split(",")[0]).write_bytes(bytes(i % 251 for i in range(size)))
    (folder / TRUTH_FILE).write_text("\n".join(rows) + "\n")
    data = read_dataset(tmp_path, model)
    assert [(f.classes, f.label) for f in data.files] == [tuple(int(v) for v in r.split(",")[1:3]) for r in rows]
    f = data.files[0]
    if model == "ad01":
        # script.py: windows of bytes_to_send every stride while a whole window fits: (5120-2560)/512+1
        assert len(f.segments) == 6 and all(len(s) == 2560 for s in f.segments)
        assert f.segments[1] == f.data[512 : 512 + 2560] and f.segments[-1] == f.data[-2560:]
    else:
        assert f.segments == (f.data,)


def test_a_file_shorter_than_its_window_is_a_clear_error(tmp_path):
    (tmp_path / "x.bin").write_bytes(bytes(100))
    (tmp_path / TRUTH_FILE).write_text("x.bin,2,0,2560,512\n")
    with pytest.raises(DutError, match="x.bin is shorter than bytes_to_send 2560"):
        read_dataset(tmp_path)
