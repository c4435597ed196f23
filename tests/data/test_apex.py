"""The apex taken from the media: the frame of onset..offset that changes most."""

import cv2
import numpy as np

from mer.data.datasets import build_dataset_manifest, load_dataset_spec


def test_apex_max_motion(tmp_path):
    (tmp_path / "spec.yaml").write_text(
        "name: motion\npath: '{subject_folder}/{filename}'\nsubject_folder: 's{subject}'\n"
        "apex: max_motion\ncolumns: {subject: Subject, filename: Filename, onset: OnsetFrame,\n"
        "  apex: null, offset: OffsetFrame, action_units: null, emotion: Estimated Emotion}\n"
        "protocols: {three: {negative: [negative], positive: [positive]}}\nprotocol: three\n"
    )
    folder = tmp_path / "root" / "s1" / "s1_ne_01"
    folder.mkdir(parents=True)
    for number in range(100, 110):
        image = np.full((16, 16, 3), 50, np.uint8)
        if number >= 106:  # the face changes most at frame 106 (and stays changed)
            image[:, :8] = 200
        if number == 103:
            image[:2, :2] = 60  # a small change earlier
        cv2.imwrite(str(folder / f"image{number}.png"), image)
    sheet = tmp_path / "list.csv"
    sheet.write_text("Subject,Filename,OnsetFrame,OffsetFrame,Estimated Emotion\n"
                     "1,s1_ne_01,101,108,negative\n")
    spec = load_dataset_spec(str(tmp_path / "spec.yaml"))
    manifest = build_dataset_manifest(spec, tmp_path / "root", sheet)
    assert manifest.samples.loc[0, "apex"] == 106
    middle = build_dataset_manifest(spec, None, sheet, sheets_only=True)
    assert middle.samples.loc[0, "apex"] == 104  # without media: the middle frame
