"""Reading relation data: both file formats, their checks, and whole data sets."""
import json

import pytest

from cloce.data import (
    DataError,
    EntityMention,
    LabelMap,
    default_data_dir,
    detect_format,
    load_dataset,
    read_instances,
)

SENTENCE = ["bill", "gates", "founded", "microsoft", "in", "1975", "."]


def opennre(relation="founded", h=(0, 2), t=(3, 4), **extra):
    return {"token": SENTENCE, "h": {"name": "x", "pos": list(h)}, "t": {"name": "y", "pos": list(t)},
            "relation": relation, **extra}


def tacred(relation="org:founded_by", subj=(3, 3), obj=(0, 1), **extra):
    return {"id": "r1", "token": SENTENCE, "subj_start": subj[0], "subj_end": subj[1],
            "obj_start": obj[0], "obj_end": obj[1], "subj_type": "ORGANIZATION",
            "obj_type": "PERSON", "relation": relation, **extra}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def write_array(path, records):
    # One record a line, as TACRED ships, so records have lines of their own.
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    return path


def test_opennre_spans_are_end_exclusive_and_have_no_types(tmp_path):
    [instance] = read_instances(write_jsonl(tmp_path / "train.txt", [opennre()]), fmt="opennre")
    assert instance.head == EntityMention(0, 2, None)
    assert instance.head_tokens == ("bill", "gates")
    assert instance.tail_tokens == ("microsoft",)
    assert instance.relation == "founded"


def test_opennre_entity_types_are_kept_when_given(tmp_path):
    record = opennre()
    record["h"]["type"], record["t"]["type"] = "PERSON", "ORGANIZATION"
    [instance] = read_instances(write_jsonl(tmp_path / "a.txt", [record]))
    assert (instance.head.type, instance.tail.type) == ("PERSON", "ORGANIZATION")


def test_tacred_inclusive_ends_become_exclusive_and_types_are_kept(tmp_path):
    [instance] = read_instances(write_array(tmp_path / "train.json", [tacred()]), fmt="tacred")
    assert instance.id == "r1"
    assert instance.head == EntityMention(3, 4, "ORGANIZATION")
    assert instance.tail == EntityMention(0, 2, "PERSON")
    assert instance.tail_tokens == ("bill", "gates")


def test_tacred_objects_may_also_come_one_per_line(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [tacred(), tacred(id="r2")])
    assert [i.id for i in read_instances(path)] == ["r1", "r2"]


def test_ids_fall_back_to_file_stem_and_line(tmp_path):
    path = tmp_path / "dev.txt"
    path.write_text(json.dumps(opennre()) + "\n\n" + json.dumps(opennre()) + "\n")
    assert [i.id for i in read_instances(path)] == ["dev:1", "dev:3"]


@pytest.mark.parametrize(
    "write, record, expected",
    [
        (write_array, tacred(), "tacred"),
        (write_jsonl, tacred(), "tacred"),
        (write_jsonl, opennre(), "opennre"),
    ],
)
def test_format_is_detected_from_layout_and_keys(tmp_path, write, record, expected):
    assert detect_format(write(tmp_path / "data", [record])) == expected


def test_detection_says_when_it_cannot_tell(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"sentence": "x", "label": "y"}])
    with pytest.raises(DataError, match="cannot tell the format.*fmt='tacred' or fmt='opennre'"):
        read_instances(path)


def test_malformed_json_names_its_line(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(json.dumps(opennre()) + "\n" + '{"token": ["a"],\n')
    with pytest.raises(DataError, match="train.txt, line 2: malformed JSON") as caught:
        read_instances(path)
    assert caught.value.line == 2


def test_malformed_record_inside_a_tacred_array_names_its_line(tmp_path):
    path = tmp_path / "train.json"
    path.write_text("[\n" + json.dumps(tacred()) + ",\n" + '{"id": "r2", "token": [}\n]')
    with pytest.raises(DataError, match="line 3: malformed JSON"):
        read_instances(path)


def test_invalid_record_inside_a_tacred_array_names_its_line(tmp_path):
    path = write_array(tmp_path / "train.json", [tacred(), tacred(subj=(3, 9))])
    with pytest.raises(DataError, match="line 3: head span"):
        read_instances(path)


def test_missing_key_is_named(tmp_path):
    record = tacred()
    del record["obj_type"]
    with pytest.raises(DataError, match="line 2: missing key 'obj_type'"):
        read_instances(write_array(tmp_path / "train.json", [record]))


def test_tokens_must_be_a_non_empty_list_of_strings(tmp_path):
    path = write_jsonl(tmp_path / "train.txt", [opennre(token=[])])
    with pytest.raises(DataError, match="'token' must be a non-empty list of strings"):
        read_instances(path)


def test_span_out_of_range_names_the_span_and_sentence_length(tmp_path):
    path = write_jsonl(tmp_path / "train.txt", [opennre(h=(5, 9))])
    with pytest.raises(DataError, match=r"head span \[5, 9\) is out of range for a sentence of 7 tokens"):
        read_instances(path)


def test_tacred_span_errors_show_the_inclusive_fields_too(tmp_path):
    path = write_array(tmp_path / "train.json", [tacred(obj=(6, 7))])
    with pytest.raises(DataError, match=r"tail span \[6, 8\) \(obj_start=6, obj_end=7, end inclusive\)"):
        read_instances(path)


def test_empty_span_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "train.txt", [opennre(t=(3, 3))])
    with pytest.raises(DataError, match=r"tail span \[3, 3\) is empty"):
        read_instances(path)


def test_relation_outside_the_label_map_names_label_line_and_rel2id(tmp_path):
    path = write_jsonl(tmp_path / "train.txt", [opennre("founded"), opennre("born_in")])
    labels = LabelMap(("no_relation", "founded"), "no_relation")
    with pytest.raises(DataError, match="line 2: relation 'born_in' is not in the label map \\(rel2id"):
        read_instances(path, label_map=labels)


@pytest.mark.parametrize("content", ["", "\n  \n", "[\n]\n"])
def test_a_file_without_records_is_an_error(tmp_path, content):
    path = tmp_path / "train.json"
    path.write_text(content)
    with pytest.raises(DataError, match="empty"):
        read_instances(path)


def test_a_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_instances(tmp_path / "nope.txt")


# --- whole data sets ---------------------------------------------------------------------

def make_folder(folder, rel2id=None, val_name="dev.txt"):
    folder.mkdir()
    write_jsonl(folder / "train.txt", [opennre("founded"), opennre("Other")])
    write_jsonl(folder / val_name, [opennre("born_in")])
    write_jsonl(folder / "test.txt", [opennre("founded")])
    if rel2id is not None:
        (folder / "rel2id.json").write_text(json.dumps(rel2id))
    return folder


def test_load_dataset_reads_a_folder_and_takes_label_order_from_rel2id(tmp_path):
    folder = make_folder(tmp_path / "d", rel2id={"Other": 0, "founded": 2, "born_in": 1})
    data = load_dataset(folder)
    assert (len(data.train), len(data.val), len(data.test)) == (2, 1, 1)
    assert data.label_map == LabelMap(("Other", "born_in", "founded"), "Other")
    assert data.files["val"] == str(folder / "dev.txt")
    assert data.files["rel2id"] == str(folder / "rel2id.json")
    assert data.has_types is False


def test_without_rel2id_labels_come_from_all_splits_no_relation_first(tmp_path):
    data = load_dataset(make_folder(tmp_path / "d", val_name="val.jsonl"))
    assert data.label_map.labels == ("Other", "born_in", "founded")
    assert "rel2id" not in data.files


def test_rel2id_makes_unknown_labels_errors(tmp_path):
    folder = make_folder(tmp_path / "d", rel2id={"Other": 0, "founded": 1})
    with pytest.raises(DataError, match="dev.txt, line 1: relation 'born_in'"):
        load_dataset(folder)


def test_explicit_files_win_over_the_folder(tmp_path):
    folder = make_folder(tmp_path / "d")
    other_test = write_array(tmp_path / "typed.json", [tacred("founded")])
    data = load_dataset(folder, test=other_test)
    assert data.files["test"] == str(other_test)
    assert data.test[0].head.type == "ORGANIZATION"


def test_tacred_files_given_one_by_one_have_types(tmp_path):
    files = {s: write_array(tmp_path / f"{s}.json", [tacred()]) for s in ("train", "val", "test")}
    data = load_dataset(**files)
    assert data.has_types is True
    assert data.label_map.labels == ("org:founded_by",)


def test_a_missing_folder_says_which_path_and_how_to_give_one(tmp_path):
    with pytest.raises(DataError, match="data directory not found.*--data-dir DIR.*CLOCE_DATA_DIR"):
        load_dataset(tmp_path / "absent")


def test_a_missing_split_file_lists_the_names_tried(tmp_path):
    folder = make_folder(tmp_path / "d")
    (folder / "dev.txt").unlink()
    with pytest.raises(DataError, match="no val file in .*dev.json, val.json.*--train/--val/--test FILE"):
        load_dataset(folder)


def test_default_data_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CLOCE_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path


def place_module(monkeypatch, module_file):
    """cloce/data/dataset.py as if it lived at `module_file` (only where it looks from changes)."""
    from cloce.data import dataset

    module_file.parent.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(dataset, "__file__", str(module_file))
    monkeypatch.delenv("CLOCE_DATA_DIR", raising=False)


def test_a_checkout_defaults_to_the_shared_semeval_beside_it(monkeypatch, tmp_path):
    place_module(monkeypatch, tmp_path / "repo" / "cloce" / "data" / "dataset.py")
    (tmp_path / "repo" / "pyproject.toml").write_text('[project]\nname = "cloce-study"\n')
    assert default_data_dir() == tmp_path / "shared" / "datasets" / "semeval"


@pytest.mark.parametrize("pyproject", [None, '[project]\nname = "someone-else"\n'])
def test_an_installed_copy_never_looks_beside_its_site_packages(monkeypatch, tmp_path, pyproject):
    """A wheel in <venv>/lib/site-packages, or vendored in another project: no checkout, no default,
    even with a SemEval-shaped folder where a checkout's ../shared would be."""
    site = tmp_path / "venv" / "site-packages"
    place_module(monkeypatch, site / "cloce" / "data" / "dataset.py")
    if pyproject is not None:
        (site / "pyproject.toml").write_text(pyproject)
    (tmp_path / "venv" / "shared" / "datasets").mkdir(parents=True)
    make_folder(tmp_path / "venv" / "shared" / "datasets" / "semeval")
    assert default_data_dir() is None
    with pytest.raises(DataError, match="data directory: none given.*--data-dir DIR.*CLOCE_DATA_DIR"):
        load_dataset()
    monkeypatch.setenv("CLOCE_DATA_DIR", str(tmp_path / "venv" / "shared" / "datasets" / "semeval"))
    assert len(load_dataset().train) > 0  # $CLOCE_DATA_DIR still wins


# --- the shared SemEval copy -------------------------------------------------------------

def test_semeval_split_sizes(semeval):
    assert (len(semeval.train), len(semeval.val), len(semeval.test)) == (6507, 1493, 2717)


def test_semeval_has_19_labels_with_other_first(semeval):
    assert len(semeval.label_map) == 19
    assert semeval.label_map.no_relation == "Other"
    assert semeval.label_map.id_of("Other") == 0
    assert semeval.has_types is False


def test_semeval_train_lacks_one_label(semeval):
    train_labels = {i.relation for i in semeval.train}
    assert set(semeval.label_map.labels) - train_labels == {"Entity-Destination(e2,e1)"}
