"""The DICOM node's series store: every instance kept, a changed re-send beside the earlier
file, an unchanged one the same instance, versions counted, work folders of links."""

from __future__ import annotations

import numpy as np
from synthetic_dicom import write_series

from tf_medseg.dicom.versions import SeriesStore


def test_instances_are_kept_and_versions_counted(tmp_path):
    store = SeriesStore(tmp_path / "node")
    info = write_series(store.incoming / "1.2.3", np.zeros((4, 8, 8), np.uint16))
    names = sorted(p.name for p in (store.incoming / "1.2.3").iterdir())
    for p in (store.incoming / "1.2.3").iterdir():  # named as the node stores them
        p.rename(p.with_name(f"{p.name}.dcm"))
    assert store.gather("1.2.3") == (4, 4) and store.version("1.2.3") == 0
    assert not (store.incoming / "1.2.3").exists()
    number, work = store.open_version("1.2.3")
    assert number == 1 and sorted(p.name for p in work.iterdir()) == [f"{n}.dcm" for n in names]
    store.close_version("1.2.3")
    assert not work.exists() and len(list((store.received / "1.2.3").iterdir())) == 4

    # the same instance again, and one changed: the changed one keeps the earlier beside it
    kept = sorted((store.received / "1.2.3").iterdir())
    (store.incoming / "1.2.3").mkdir(parents=True)
    (store.incoming / "1.2.3" / kept[0].name).write_bytes(kept[0].read_bytes())
    (store.incoming / "1.2.3" / kept[1].name).write_bytes(kept[1].read_bytes() + b"\0\0")
    earlier = kept[1].read_bytes()
    assert store.gather("1.2.3") == (1, 4)
    assert (store.received / "1.2.3" / f"{kept[1].name}.earlier-1").read_bytes() == earlier
    assert store.open_version("1.2.3")[0] == 2 and store.version("1.2.3") == 2
    assert SeriesStore.versioned("RS_1.2.3.dcm", 1) == "RS_1.2.3.dcm"
    assert SeriesStore.versioned("RS_1.2.3.dcm", 3) == "RS_1.2.3.v3.dcm"
    assert info["series"]
