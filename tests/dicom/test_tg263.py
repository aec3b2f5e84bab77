"""AAPM TG-263 names: one key for a structure's standard name and its local habits (case,
separators, laterality at either end, listed local names), none for another structure."""

import pytest

from tf_medseg.dicom import tg263


@pytest.mark.parametrize("names", [
    ("Parotid_L", "L Parotid", "Left parotid gland", "PAROTID-LT", "parotid left"),
    ("Parotid_R", "Rt Parotid", "right_parotid"),
    ("Bowel_Small", "Small Bowel", "small_intestine", "BOWEL SMALL"),
    ("Bone_Mandible", "Mandible", "mandible"),
    ("OpticNrv_L", "Lt Optic Nerve", "optic_nerve_l"),
    ("Glnd_Submand_R", "R Submandibular", "Right submandibular gland"),
    ("SpinalCord", "Spinal Cord", "CORD"),
])
def test_local_names_share_the_standard_names_key(names):
    assert len({tg263.key(n) for n in names}) == 1
    assert {tg263.standard_name(n) for n in names} == {names[0]}


def test_other_structures_and_unknown_names_stay_apart():
    assert tg263.key("Parotid_L") != tg263.key("Parotid_R")
    assert tg263.key("Bowel_Small") != tg263.key("Bowel_Large") != tg263.key("Colon")
    assert tg263.standard_name("Anterior") is None and tg263.key("Anterior") == "anterior"
    assert tg263.key("L") == "l"  # a laterality word alone is a name, not a side
    assert all(tg263.standard_name(n) == n for n in tg263.STANDARD)
    assert len({tg263.key(n) for n in tg263.STANDARD}) == len(tg263.STANDARD)
