"""Tests of ferclean.io.ferplus: reading FER+'s votes, aligning them, counting agreement.

The reading is checked on the real ``fer2013new.csv`` (skipped without it) and on files
written here; the alignment on datasets built here, since the shared FER-2013 is the
image-folder form, which has no row order in common with FER+.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferclean.dataset import EMOTIONS, SPLITS, FaceDataset, label_code
from ferclean.errors import BadInputError
from ferclean.io import ferplus, load, save
from ferclean.io.ferplus import (
    FERPLUS_COLUMNS,
    FERPLUS_VOTE_COLUMNS,
    FerPlusVotes,
    align_ferplus,
    ferplus_agreement,
    read_ferplus,
)

HEADER = ",".join(FERPLUS_COLUMNS)
ROOT = Path(__file__).resolve().parents[2]
# FER+'s own name for each FER-2013 class, as the issue maps them
FERPLUS_NAME = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
                "sad": "sadness", "surprise": "surprise", "neutral": "neutral"}


def row_text(usage: str = "Training", name: str = "fer0000000.png", **votes: int) -> str:
    """One FER+ row; votes by FER+ column name (``NF`` as ``NF``), the rest 0."""
    return ",".join([usage, name, *(str(votes.get(c, 0)) for c in FERPLUS_VOTE_COLUMNS)])


def write(tmp_path: Path, rows: list[str], *, header: str = HEADER, name: str = "new.csv",
          end: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes((end.join([header, *rows]) + end).encode())
    return path


def ten(column: str, usage: str = "Training") -> str:
    return row_text(usage, **{column: 10})


def usage_rows(splits: list[str]) -> list[str]:
    """One row per split name, 10 votes for neutral each."""
    return [row_text(s, f"fer{i:07d}.png", neutral=10) for i, s in enumerate(splits)]


# ------------------------------------------------------------------------ mapping
def test_columns_map_onto_ferclean_classes_in_order(tmp_path):
    """Each FER+ column's votes land in its FER-2013 class, whatever the header order."""
    distinct = {c: k + 1 for k, c in enumerate(FERPLUS_VOTE_COLUMNS)}  # 1..10
    v = read_ferplus(write(tmp_path, [row_text(**distinct)]))
    expected = [distinct[FERPLUS_NAME[e]] for e in EMOTIONS]
    assert expected == [5, 6, 7, 2, 4, 3, 1]  # anger, disgust, fear, happiness, ...
    assert v.votes.tolist() == [expected]
    assert (v.contempt.tolist(), v.unknown.tolist(), v.not_face.tolist()) == ([8], [9], [10])

    shuffled = list(reversed(FERPLUS_COLUMNS))
    values = dict(zip(FERPLUS_COLUMNS, row_text(**distinct).split(","), strict=True))
    w = read_ferplus(write(tmp_path, [",".join(values[c] for c in shuffled)],
                           header=",".join(shuffled), name="shuffled.csv"))
    assert w.votes.tolist() == v.votes.tolist() and w.not_face.tolist() == [10]


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_unanimous_vote_is_that_class(tmp_path, emotion):
    v = read_ferplus(write(tmp_path, [ten(FERPLUS_NAME[emotion])]))
    assert v.majority.tolist() == [label_code(emotion)]
    assert v.distribution[0, label_code(emotion)] == 1.0


def test_extra_classes_are_not_fer_classes(tmp_path):
    v = read_ferplus(write(tmp_path, [ten("contempt"), ten("unknown"), ten("NF")]))
    assert v.votes.sum() == 0
    assert v.majority.tolist() == [-1, -1, -1]
    assert v.is_not_face.tolist() == [False, False, True]
    assert v.distribution.tolist() == [[0.0] * 7] * 3  # no FER vote: zeros, not NaN


# ------------------------------------------------------------------- the rules
MAJORITY_CASES = [
    # (votes by FER+ column, majority, is_not_face, why)
    (dict(neutral=4, happiness=3, sadness=3), "neutral", False, "plurality among the seven"),
    (dict(neutral=4, sadness=4, anger=2), None, False, "tie among the seven"),
    (dict(happiness=5, contempt=2, unknown=1, NF=1), "happy", False, "5 > 2+1+1"),
    (dict(happiness=5, contempt=2, unknown=1, NF=2), None, False, "5 == 2+1+2: not outvoting"),
    (dict(happiness=4, contempt=3, unknown=3), None, False, "4 < 3+3"),
    (dict(happiness=3, anger=2, contempt=2, unknown=2, NF=1), None, False, "3 < 2+2+1"),
    (dict(happiness=5, NF=5), None, True, "NF has half: no majority, not a face"),
    (dict(happiness=6, NF=4), "happy", False, "NF below half"),
    (dict(NF=4, unknown=3, happiness=3), None, False, "NF plurality, but under half"),
    (dict(neutral=4, happiness=1, anger=1, disgust=1, NF=2), "neutral", False, "9 votes"),
]


@pytest.mark.parametrize(("votes", "majority", "not_face", "why"), MAJORITY_CASES,
                         ids=[c[3] for c in MAJORITY_CASES])
def test_majority_and_not_face_rules(tmp_path, votes, majority, not_face, why):
    v = read_ferplus(write(tmp_path, [row_text(**votes)]))
    assert v.majority.tolist() == [-1 if majority is None else label_code(majority)], why
    assert v.is_not_face.tolist() == [not_face], why


def test_not_face_never_has_a_majority():
    """The two rules exclude each other for every split of up to 10 votes into 4 buckets
    (best FER class, other FER votes, contempt+unknown, NF)."""
    rows = [(b, o, cu, nf) for b in range(11) for o in range(11 - b) for cu in range(11 - b - o)
            for nf in range(11 - b - o - cu) if o <= b]
    votes = np.zeros((len(rows), 7), np.int32)
    votes[:, 3] = [r[0] for r in rows]
    votes[:, 0] = [r[1] for r in rows]
    v = FerPlusVotes(votes=votes, contempt=[r[2] for r in rows], unknown=np.zeros(len(rows)),
                     not_face=[r[3] for r in rows], usage=np.zeros(len(rows)),
                     image_names=["x"] * len(rows), rows=np.arange(len(rows)))
    assert not np.any(v.is_not_face & (v.majority >= 0))
    assert v.is_not_face.any() and (v.majority >= 0).any()


def test_distribution_rows_sum_to_one(tmp_path):
    v = read_ferplus(write(tmp_path, [row_text(neutral=3, anger=1, unknown=6)]))
    assert v.distribution.tolist() == [[0.25, 0, 0, 0, 0, 0, 0.75]]
    assert v.n_votes.tolist() == [10]


def test_votes_are_read_only_and_subsets_keep_rows(tmp_path):
    v = read_ferplus(write(tmp_path, usage_rows(["Training", "PublicTest", "PrivateTest"])))
    with pytest.raises(ValueError):
        v.votes[0, 0] = 3
    picked = v[[2, 0]]
    assert picked.rows.tolist() == [2, 0]
    assert picked.usage_names.tolist() == ["PrivateTest", "Training"]
    assert v.subset(np.array([False, True, False])).rows.tolist() == [1]
    with pytest.raises(IndexError, match="out of range"):
        v.subset([3])
    with pytest.raises(TypeError, match="votes must be integers"):
        FerPlusVotes(votes=[[1.5] * 7], contempt=[0], unknown=[0], not_face=[0], usage=[0],
                     image_names=["a"], rows=[0])
    with pytest.raises(ValueError, match=">= 0"):
        FerPlusVotes(votes=[[-1] * 7], contempt=[0], unknown=[0], not_face=[0], usage=[0],
                     image_names=["a"], rows=[0])
    frame = v.to_frame()
    assert frame.columns.tolist()[:4] == ["row", "usage", "image_name", "angry"]
    assert frame.majority.tolist() == [6, 6, 6]


# ------------------------------------------------------------------ the grammar
def test_tolerated_forms_read_as_the_plain_file(tmp_path):
    rows = [row_text("Training", "fer0000000.png", neutral=4, anger=3, disgust=2, sadness=1),
            row_text("PublicTest", "", NF=10)]
    plain = read_ferplus(write(tmp_path, rows))
    variants = {
        "crlf": write(tmp_path, rows, end="\r\n", name="crlf.csv"),
        "bom": tmp_path / "bom.csv",
        "quotes_spaces_case": write(
            tmp_path,
            [' training , "fer0000000.png",4, 0,0,1,"3",2,0,0,0,0',
             "PUBLICTEST,,00,0,0,0,0,0,0,0,0,0010"],
            header=' "usage", IMAGE NAME ,' + ",".join(FERPLUS_VOTE_COLUMNS).upper(),
            name="loose.csv"),
    }
    variants["bom"].write_bytes(b"\xef\xbb\xbf" + write(tmp_path, rows).read_bytes())
    for why, path in variants.items():
        got = read_ferplus(path)
        for field in ("votes", "contempt", "unknown", "not_face", "usage", "image_names", "rows"):
            assert np.array_equal(getattr(got, field), getattr(plain, field)), (why, field)
    assert plain.has_image.tolist() == [True, False]


def test_header_only_is_empty_and_empty_file_is_an_error(tmp_path):
    v = read_ferplus(write(tmp_path, []))
    assert len(v) == 0 and v.votes.shape == (0, 7) and v.majority.shape == (0,)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(BadInputError, match=r"empty.csv: empty file; expected FER\+'s header"):
        read_ferplus(empty)


@pytest.mark.parametrize(("header", "message"), [
    (HEADER.replace(",NF", ""), r"no 'NF'"),
    (HEADER + ",extra", r"unknown column 'extra'"),
    (HEADER.replace("neutral", "anger"), r"no 'neutral'; 2 columns 'anger'"),
    ("emotion,pixels,Usage", r"no 'Image name'"),  # the Kaggle CSV passed by mistake
])
def test_bad_header_names_file_and_shows_header(tmp_path, header, message):
    path = write(tmp_path, [row_text()], header=header)
    with pytest.raises(BadInputError, match=r"new.csv: header: not FER\+'s header.*" + message):
        read_ferplus(path)


@pytest.mark.parametrize(("field", "reason"), [
    ("x", r"anger vote count 'x' is not a non-negative integer"),
    ("1.5", "not a non-negative"),
    ("+5", "not a non-negative"),
    ("1_0", "not a non-negative"),
    ("\u0663", "not a non-negative"),  # Arabic-Indic three: int() would take it
    ("\u00b2", "not a non-negative"),  # superscript two: str.isdigit() would take it
    ("", r"anger vote count '' is not"),
    ("-1", r"anger vote count '-1' is negative"),
    ("1234567890", "too large"),
])
def test_bad_vote_names_row_and_column(tmp_path, field, reason):
    rows = usage_rows(["Training"] * 3)
    cells = rows[2].split(",")
    cells[FERPLUS_COLUMNS.index("anger")] = field
    rows[2] = ",".join(cells)
    with pytest.raises(BadInputError, match=r"new.csv: row 2 \(line 4\): .*" + reason):
        read_ferplus(write(tmp_path, rows))


@pytest.mark.parametrize("usage", ["Validation", "Training.", "#Training", "", "Tra\u0130ning"])
def test_bad_usage_names_row(tmp_path, usage):
    rows = usage_rows(["Training", "PublicTest"])
    rows[1] = row_text(usage, neutral=10)
    with pytest.raises(BadInputError, match=r"new.csv: row 1 \(line 3\): unknown Usage .*"
                       r"expected one of Training, PublicTest, PrivateTest"):
        read_ferplus(write(tmp_path, rows))


def test_bad_rows_of_other_kinds(tmp_path):
    rows = usage_rows(["Training"] * 3)
    cases = {
        "fields": (rows[:1] + [rows[1] + ",0"] + rows[2:], r"row 1 \(line 3\): expected 12 "),
        "blank": (rows[:1] + [""] + rows[1:], r"row 1 \(line 3\): blank line"),
    }
    for why, (lines, message) in cases.items():
        with pytest.raises(BadInputError, match=message):
            read_ferplus(write(tmp_path, lines, name=f"{why}.csv"))
    latin = tmp_path / "latin.csv"
    latin.write_bytes(f"{HEADER}\n{rows[0]}\nTraining,caf\xe9.png,10,0,0,0,0,0,0,0,0,0\n"
                      .encode("latin-1"))
    with pytest.raises(BadInputError, match=r"latin.csv: row 1 \(line 3\): byte \d+ is not "
                       "UTF-8"):
        read_ferplus(latin)


def test_huge_and_special_files_are_refused_before_reading(tmp_path):
    big = tmp_path / "big.csv"
    with open(big, "wb") as fh:  # sparse: no disk, no memory
        fh.truncate(17 << 20)
    with pytest.raises(BadInputError, match=r"big.csv: file is 17,825,792 bytes, more than"):
        read_ferplus(big)
    with pytest.raises(BadInputError, match="cannot read the file"):
        read_ferplus(tmp_path / "missing.csv")
    with pytest.raises(BadInputError, match="not a regular file"):
        read_ferplus(tmp_path)
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo.csv"
        os.mkfifo(fifo)
        with pytest.raises(BadInputError, match="not a regular file"):
            read_ferplus(fifo)  # would block forever if read


def test_long_line_refused(tmp_path):
    rows = usage_rows(["Training"])
    rows.append(row_text(name="x" * (70 << 10)))
    with pytest.raises(BadInputError, match=r"row 1 \(line 3\): line is 71,[0-9]{3} bytes"):
        read_ferplus(write(tmp_path, rows))


_ODD_CELLS = ["007", "0000000000", "-1", "+1", "1.0", "", " 3", '"4"', "x", "\u0663", "4\r",
              "Training", "1,2"]


@settings(max_examples=50, deadline=None)
@given(rows=st.lists(st.tuples(
    # mostly clean values, so that both readers get to answer often
    st.sampled_from(["Training"] * 4 + ["PublicTest", "privatetest", "Train", " Training",
                                        '"Training"']),
    st.sampled_from(["fer0000001.png"] * 3 + ["", "caf\u00e9.png", "a b.png", " x "]),
    st.lists(st.integers(0, 10).map(str), min_size=10, max_size=10),
    st.one_of(st.none(), st.none(), st.none(),
              st.tuples(st.integers(0, 9), st.sampled_from(_ODD_CELLS)))),
    min_size=1, max_size=4))
def test_fast_and_careful_readers_agree(rows):
    """On any rows the fast reader either steps aside or gives the careful reader's answer."""
    body = []
    for usage, name, cells, odd in rows:
        if odd is not None:
            cells[odd[0]] = odd[1]
        body.append(",".join([usage, name, *cells]).encode())
    order = list(range(len(FERPLUS_COLUMNS)))
    joined = b"\n".join(body)
    fast = ferplus._parse_fast(body, joined, order, clean=ferplus._is_clean(joined))
    try:
        careful = ferplus._parse_careful("f.csv", body, order)
    except BadInputError:
        assert fast is None
        return
    if fast is not None:
        for a, b in zip(fast, careful, strict=True):
            assert np.array_equal(a, b)


# --------------------------------------------------------------------- alignment
def dataset(splits: list[str], *, source: str = "fer2013.csv", rows=None) -> FaceDataset:
    n = len(splits)
    return FaceDataset(np.zeros((n, 48, 48), np.uint8), labels=np.arange(n) % 7,
                       splits=splits, rows=rows, source=source)


SPLIT_ORDER = ["Training"] * 4 + ["PublicTest"] * 2 + ["PrivateTest"] * 2


@pytest.fixture
def votes8(tmp_path) -> FerPlusVotes:
    """A FER+ file of 8 rows in Kaggle split order; row r has 10 votes for class r % 7."""
    rows = [row_text(s, f"fer{r:07d}.png", **{FERPLUS_NAME[EMOTIONS[r % 7]]: 10})
            for r, s in enumerate(SPLIT_ORDER)]
    return read_ferplus(write(tmp_path, rows, name="fer2013new.csv"))


def test_align_whole_dataset_in_its_order(votes8):
    ds = dataset(SPLIT_ORDER)
    aligned = align_ferplus(votes8, ds)
    assert aligned.rows.tolist() == list(range(8))
    assert aligned.majority.tolist() == ds.labels.tolist()  # row r voted r % 7
    # a shuffled dataset keeps its rows: votes follow the images
    perm = np.array([5, 0, 7, 2, 1, 6, 3, 4])
    shuffled = ds[perm]
    got = align_ferplus(votes8, shuffled)
    assert got.rows.tolist() == perm.tolist()
    assert got.majority.tolist() == shuffled.labels.tolist()


def test_align_refuses_another_row_count(votes8):
    ds = dataset(SPLIT_ORDER + ["PrivateTest"], source="other.csv")
    with pytest.raises(BadInputError, match=r"fer2013new.csv: does not match the dataset "
                       r"other.csv: row counts differ: FER\+ has 8 rows, the dataset's input 9;"
                       r" FER\+ aligns only with the original Kaggle fer2013.csv.*image-folder"):
        align_ferplus(votes8, ds)
    with pytest.raises(BadInputError, match=r"FER\+ has 8 rows, the dataset's input 4; .*"
                       "pass subset=True"):
        align_ferplus(votes8, dataset(SPLIT_ORDER[:4]))


def test_align_counts_rows_the_reader_dropped(votes8):
    ds = dataset(SPLIT_ORDER[:3] + SPLIT_ORDER[4:], rows=[0, 1, 2, 4, 5, 6, 7])
    with pytest.raises(BadInputError, match=r"input 7;"):
        align_ferplus(votes8, ds)
    ds.dropped = pd.DataFrame({"source": ["fer2013.csv"], "location": ["row 3 (line 5)"],
                               "reason": ["expected 2304 pixel values, found 2303"]})
    assert align_ferplus(votes8, ds).rows.tolist() == [0, 1, 2, 4, 5, 6, 7]


def test_align_refuses_another_usage_naming_the_row(votes8):
    splits = list(SPLIT_ORDER)
    splits[5], splits[6] = "PrivateTest", "PublicTest"
    with pytest.raises(BadInputError, match=r"fer2013new.csv: row 5 \(line 7\): does not match "
                       r"the dataset fer2013.csv: Usage is PublicTest in FER\+ but PrivateTest "
                       r"for the dataset's image 5 \(5, input row 5\); 2 of 8 images differ\. "
                       r"FER\+ aligns only with the original Kaggle fer2013.csv"):
        align_ferplus(votes8, dataset(splits))


def test_align_subset(votes8):
    ds = dataset(SPLIT_ORDER)
    tests = ds.split(["PublicTest", "PrivateTest"])
    got = align_ferplus(votes8, tests, subset=True)
    assert got.rows.tolist() == [4, 5, 6, 7]
    assert got.usage_names.tolist() == SPLIT_ORDER[4:]
    beyond = dataset(["Training"], rows=[8])
    with pytest.raises(BadInputError, match=r"input row 8, but FER\+ has rows 0..7 only"):
        align_ferplus(votes8, beyond, subset=True)
    # subset=True still checks usage
    with pytest.raises(BadInputError, match=r"row 4 \(line 6\)"):
        align_ferplus(votes8, dataset(["Training"], rows=[4]), subset=True)


def test_align_refuses_synthetic_images_and_partial_votes(votes8):
    ds = dataset(SPLIT_ORDER)
    ds.synthetic = np.arange(8) == 3
    with pytest.raises(BadInputError, match=r"image 3 \(3\) is synthetic"):
        align_ferplus(votes8, ds)
    with pytest.raises(ValueError, match="every FER\\+ row in file order"):
        align_ferplus(votes8[[1, 0, 2, 3, 4, 5, 6, 7]], dataset(SPLIT_ORDER))
    with pytest.raises(TypeError, match="FaceDataset"):
        align_ferplus(votes8, np.zeros(8))


def test_align_with_the_kaggle_csv_form_and_not_the_folder_form(votes8, tmp_path):
    """The same images as a Kaggle CSV align; written as an image folder they do not."""
    rng = np.random.default_rng(0)
    ds = FaceDataset(rng.integers(0, 256, (8, 48, 48), dtype=np.uint8),
                     labels=np.arange(8) % 7, splits=SPLIT_ORDER)
    csv = load(save(ds, tmp_path / "fer2013.csv"))
    assert align_ferplus(votes8, csv).majority.tolist() == csv.labels.tolist()
    folder = load(save(ds, tmp_path / "images.zip", image_format="png"))
    assert len(folder) == 8
    with pytest.raises(BadInputError, match=r"images.zip: Usage is Training in FER\+ but "
                       r"(PublicTest|PrivateTest).*not with the image-folder"):
        align_ferplus(votes8, folder)


# --------------------------------------------------------------------- agreement
def test_agreement_counts_by_hand(tmp_path):
    rows = [
        ten("happiness"),                                # 0 happy
        ten("happiness"),                                # 1 happy
        row_text(neutral=6, happiness=4),                # 2 neutral
        row_text(neutral=5, sadness=5),                  # 3 none (tie)
        ten("NF"),                                       # 4 none, not a face
        ten("anger"),                                    # 5 angry
        ten("anger"),                                    # 6 angry (unlabelled image)
    ]
    v = read_ferplus(write(tmp_path, rows))
    labels = [label_code("happy"), label_code("neutral"), label_code("neutral"),
              label_code("sad"), label_code("happy"), label_code("fear"), -1]
    a = ferplus_agreement(labels, v)
    assert (a.compared, a.disagree) == (4, 2)
    conf = a.confusion
    assert conf.loc["happy", "happy"] == 1 and conf.loc["neutral", "happy"] == 1
    assert conf.loc["neutral", "neutral"] == 1 and conf.loc["sad", "none"] == 1
    assert conf.loc["happy", "none"] == 1 and conf.loc["fear", "angry"] == 1
    assert conf.to_numpy().sum() == 6  # the unlabelled image is left out
    assert conf.columns.tolist() == [*EMOTIONS, "none"]
    happy = a.per_class.loc["happy"]
    assert happy[["images", "no_majority", "not_face", "compared", "agree",
                  "disagree"]].tolist() == [2, 1, 1, 1, 1, 0]
    assert a.per_class.loc["neutral", "disagree_rate"] == 0.5
    assert a.per_class.loc["fear", "disagree_rate"] == 1.0
    assert np.isnan(a.per_class.loc["sad", "disagree_rate"])  # nothing compared
    assert a.per_class.loc["all", "images"] == 6


def test_agreement_checks_its_inputs(votes8):
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        ferplus_agreement([0, 1], votes8)
    with pytest.raises(ValueError, match="-1..6"):
        ferplus_agreement(np.full(8, 7), votes8)
    with pytest.raises(TypeError, match="FerPlusVotes"):
        ferplus_agreement(np.zeros(8, int), np.zeros((8, 7)))


# ------------------------------------------------------------------- the real file
def _real_ferplus() -> Path | None:
    value = os.environ.get("FERCLEAN_FERPLUS")
    path = Path(value) if value else ROOT.parent / "shared" / "data" / "ferplus" / "fer2013new.csv"
    return path if path.is_file() else None


@pytest.fixture(scope="module")
def real_votes() -> FerPlusVotes:
    path = _real_ferplus()
    if path is None:
        pytest.skip("FER+'s fer2013new.csv not found (set FERCLEAN_FERPLUS to it)")
    return read_ferplus(path)


@pytest.mark.realdata
def test_real_file_rows_and_splits(real_votes):
    v = real_votes
    assert len(v) == 35_887
    # the Kaggle CSV's order: all Training, then PublicTest, then PrivateTest
    assert np.array_equal(v.usage, np.repeat([0, 1, 2], [28_709, 3_589, 3_589]))
    assert [SPLITS[c] for c in np.unique(v.usage)] == list(SPLITS)


@pytest.mark.realdata
def test_real_file_vote_totals(real_votes):
    v = real_votes
    n_votes = v.n_votes
    assert np.flatnonzero(n_votes != 10).tolist() == [10_435]  # one image has 9 votes
    assert n_votes[10_435] == 9 and v.image_names[10_435] == "fer0010406.png"
    assert v.votes.sum(axis=0).tolist() == [28_468, 5_391, 12_174, 91_446, 47_446, 41_490,
                                            107_485]
    assert (v.contempt.sum(), v.unknown.sum(), v.not_face.sum()) == (6_062, 16_964, 1_943)


@pytest.mark.realdata
def test_real_file_dropped_images(real_votes):
    """FER+ left 173 image names empty: exactly the images all ten annotators called NF."""
    v = real_votes
    dropped = ~v.has_image
    assert dropped.sum() == 173
    assert np.bincount(v.usage[dropped], minlength=3).tolist() == [148, 10, 15]
    assert np.all(v.not_face[dropped] == 10) and np.all(v.votes[dropped] == 0)
    assert (v.not_face[~dropped] == 10).sum() == 3
    names = pd.Series(v.image_names[v.has_image])
    assert names.duplicated().sum() == 4  # four names stand for two rows each


@pytest.mark.realdata
def test_real_file_majority_and_not_face(real_votes):
    v = real_votes
    counts = dict(zip(EMOTIONS, np.bincount(v.majority[v.majority >= 0], minlength=7),
                      strict=True))
    assert counts == {"angry": 3006, "disgust": 214, "fear": 808, "happy": 9194,
                      "sad": 4196, "surprise": 4229, "neutral": 11_668}
    assert (v.majority < 0).sum() == 2572
    assert v.is_not_face.sum() == 176
    assert not np.any(v.is_not_face & (v.majority >= 0))
    dist = v.distribution
    has_fer = v.votes.sum(axis=1) > 0
    assert np.allclose(dist[has_fer].sum(axis=1), 1.0) and np.all(dist[~has_fer] == 0)



def ferplus_majority_mode(v: FerPlusVotes) -> np.ndarray:
    """FER+'s own "majority" training mode, written from its description (Barsoum et al.
    2016 and the FER+ reader): single votes are ignored, the top class must hold more
    than half of the rest, and images whose top class is contempt, unknown or NF are left
    out. -1 where it names no FER-2013 class."""
    counts = np.column_stack([v.votes, v.contempt, v.unknown, v.not_face])
    counts = np.where(counts <= 1, 0, counts)
    top = counts.argmax(axis=1)
    wins = 2 * counts.max(axis=1) > counts.sum(axis=1)
    return np.where(wins & (top < len(EMOTIONS)), top, -1)


@pytest.mark.realdata
def test_real_file_majority_against_ferplus_own_mode(real_votes):
    v = real_votes
    ours, theirs = v.majority.astype(int), ferplus_majority_mode(v)
    both = (ours >= 0) & (theirs >= 0)
    assert (theirs >= 0).sum() == 31_264 and (ours >= 0).sum() == 33_315
    assert np.array_equal(ours[both], theirs[both])  # never a different class
    assert ((ours >= 0) & (theirs < 0)).sum() == 2_099
    assert ((ours < 0) & (theirs >= 0)).sum() == 48  # e.g. 5 neutral, 4 contempt, 1 unknown
