"""Structure names by AAPM TG-263 ("Standardizing Nomenclatures in Radiation Oncology", 2018):
the standard names of the organs at risk a department contours (abdomen, pelvis, thorax, head
and neck, the brain), and the local habits that name the same structure.

:func:`key` is how ``data.roi_map`` matches a ROI name of an archive: case, spaces,
underscores and hyphens left out, a laterality word at either end (``L``, ``Lt``, ``Left``, and
the right) read as TG-263's ``_L`` / ``_R`` suffix, and a local name of a structure below
(``Small Bowel``, ``Mandible``, ``Optic Nerve``) read as its standard name, so that
``Parotid_L``, ``L Parotid`` and ``Left parotid gland`` are one structure and ``Parotid_R``
another. Nothing else is guessed: a name neither standard nor listed matches only itself.
:func:`standard_name` gives a class its TG-263 name (``export.roi_names: tg263``).
"""

from __future__ import annotations

import re

#: TG-263 standard names (primary names of the report's table) of the structures known here
STANDARD = (
    # abdomen
    "Bowel", "Bowel_Small", "Bowel_Large", "Bag_Bowel", "Colon", "Colon_Sigmoid", "Duodenum",
    "Esophagus", "Stomach", "Liver", "Spleen", "Pancreas", "Gallbladder", "Kidney_L",
    "Kidney_R", "Adrenal_L", "Adrenal_R", "A_Aorta", "V_Venacava_I",
    # pelvis
    "Bladder", "Rectum", "Prostate", "SeminalVes", "Femur_Head_L", "Femur_Head_R",
    "Uterus", "Ovary_L", "Ovary_R", "PenileBulb",
    # thorax
    "Heart", "Lung_L", "Lung_R", "Trachea", "Breast_L", "Breast_R",
    # spine
    "SpinalCord", "SpinalCanal", "CaudaEquina",
    # head and neck, brain
    "Brain", "Brainstem", "OpticChiasm", "OpticNrv_L", "OpticNrv_R", "Eye_L", "Eye_R", "Lens_L",
    "Lens_R", "Cochlea_L", "Cochlea_R", "Parotid_L", "Parotid_R", "Glnd_Submand_L",
    "Glnd_Submand_R", "Glnd_Thyroid", "Bone_Mandible", "Cavity_Oral", "Larynx", "Lips",
    "Musc_Constrict", "Pituitary", "Hippocampus_L", "Hippocampus_R",
    # the patient
    "External", "Skin",
)

#: local names (folded, without laterality) read as the folded TG-263 name
SYNONYMS = {
    "smallbowel": "bowelsmall", "smallintestine": "bowelsmall", "intestinesmall": "bowelsmall",
    "largebowel": "bowellarge", "largeintestine": "bowellarge", "intestinelarge": "bowellarge",
    "bowelbag": "bagbowel", "bowelcavity": "bagbowel", "peritonealcavity": "bagbowel",
    "sigmoid": "colonsigmoid", "sigmoidcolon": "colonsigmoid",
    "oesophagus": "esophagus", "gallbladder": "gallbladder",
    "kidney": "kidney", "adrenalgland": "adrenal", "aorta": "aaorta",
    "inferiorvenacava": "venacavai", "ivc": "venacavai",
    "urinarybladder": "bladder", "seminalvesicles": "seminalves", "seminalvesicle": "seminalves",
    "femoralhead": "femurhead", "headoffemur": "femurhead",
    "penilebulb": "penilebulb", "bulbofpenis": "penilebulb",
    "lung": "lung", "breast": "breast",
    "spinalcord": "spinalcord", "cord": "spinalcord", "spinalcanal": "spinalcanal",
    "brainstem": "brainstem", "chiasm": "opticchiasm", "chiasma": "opticchiasm",
    "opticnerve": "opticnrv", "globe": "eye", "eyeball": "eye", "lens": "lens",
    "cochlea": "cochlea", "parotid": "parotid", "parotidgland": "parotid",
    "submandibular": "glndsubmand", "submandibulargland": "glndsubmand",
    "submandibularglnd": "glndsubmand", "submand": "glndsubmand",
    "thyroid": "glndthyroid", "thyroidgland": "glndthyroid",
    "mandible": "bonemandible", "oralcavity": "cavityoral",
    "pharyngealconstrictors": "muscconstrict", "constrictors": "muscconstrict",
    "constrictormuscles": "muscconstrict", "pituitarygland": "pituitary",
    "hypophysis": "pituitary", "hippocampus": "hippocampus",
    "body": "external", "bodycontour": "external",
}

LEFT, RIGHT = {"l", "lt", "left"}, {"r", "rt", "right"}
_SEPARATORS = re.compile(r"[\s_\-]+")


def key(name: str) -> str:
    """The key two names of one structure share (see the module docstring)."""
    tokens = [t for t in _SEPARATORS.split(str(name).casefold()) if t]
    side = ""
    if len(tokens) > 1 and (tokens[-1] in LEFT or tokens[-1] in RIGHT):
        side = "l" if tokens.pop() in LEFT else "r"
    elif len(tokens) > 1 and (tokens[0] in LEFT or tokens[0] in RIGHT):
        side = "l" if tokens.pop(0) in LEFT else "r"
    body = "".join(tokens)
    body = SYNONYMS.get(body, body)
    return f"{body}_{side}" if side else body


_BY_KEY = {key(name): name for name in STANDARD}


def standard_name(name: str) -> str | None:
    """The TG-263 standard name of a structure (a class or ROI name, standard or local), or
    None where it is not one known here."""
    return _BY_KEY.get(key(name))
