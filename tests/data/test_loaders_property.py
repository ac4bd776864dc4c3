"""Property tests: the trace and prefix loaders, fed random malformed files, either load rows that pass
every check or raise BadInput (a one-line message naming the file); never another exception."""

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefixrl.data.prefixes import PREFIX_SCHEMA, load_prefixes
from prefixrl.data.traces import TRACE_SCHEMA, load_traces
from prefixrl.io.errors import BadInput
from prefixrl.io.store import read_meta, sealed

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True),
    st.text(max_size=12), st.lists(st.integers(-5, 300), max_size=8),
)


def valid_row(schema: pa.Schema) -> dict:
    """A row that loads: a reference trace of the session task (and its 60 % prefix)."""
    from dataclasses import asdict

    from conftest import reference_traces

    from prefixrl.data.prefixes import cut_prefixes
    from prefixrl.data.tasks.chain import ChainTask
    from prefixrl.embedded.tokenizer import build_tokenizer

    task, tok = ChainTask(easy_max_steps=6, hard_steps=6), build_tokenizer()
    trace = reference_traces(task, tok, 1)[0]
    return asdict(trace) if schema is TRACE_SCHEMA else asdict(cut_prefixes([trace], task, tok, k=1)[0])


def rows_for(schema: pa.Schema):
    """Rows that start valid, with random fields replaced by random values (any type) or dropped, and
    sometimes an extra field: most examples get past the file checks and exercise the row checks."""
    base = valid_row(schema)
    field = st.sampled_from(list(base))

    @st.composite
    def row(draw):
        r = dict(base)
        for name in draw(st.lists(field, max_size=3)):
            r[name] = draw(VALUES)
        for name in draw(st.lists(field, max_size=1)):
            if draw(st.integers(0, 4)) == 0:
                r.pop(name, None)
        return r

    return st.lists(row(), min_size=1, max_size=3)


def write_any(path, rows) -> bool:
    """Write rows as Parquet with whatever types pyarrow infers, sealed with their hash as a store is (so the
    row checks, not the hash, are what is exercised); False if pyarrow cannot represent them."""
    try:
        pq.write_table(sealed(pa.Table.from_pylist(rows) if rows else pa.table({"x": pa.array([], pa.int64())})), path)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return False
    return True


def check_loader(load, path) -> None:
    try:
        out = load(path)
    except BadInput as e:
        msg = str(e)
        assert str(path) in msg and "\n" not in msg
        return
    assert isinstance(out, list)


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(rows=rows_for(TRACE_SCHEMA))
def test_trace_loader_on_random_rows(rows, task, tok, tmp_path):
    path = tmp_path / "t.parquet"
    if write_any(path, rows):
        check_loader(lambda p: load_traces(p, task, tok)[0], path)


@SETTINGS
@given(rows=rows_for(PREFIX_SCHEMA))
def test_prefix_loader_on_random_rows(rows, task, tok, tmp_path):
    path = tmp_path / "p.parquet"
    if write_any(path, rows):
        check_loader(lambda p: load_prefixes(p, task, tok), path)


@SETTINGS
@given(blob=st.binary(max_size=400))
def test_loaders_on_random_bytes(blob, task, tok, tmp_path):
    path = tmp_path / "junk.parquet"
    path.write_bytes(blob)
    check_loader(lambda p: load_traces(p, task, tok)[0], path)
    check_loader(lambda p: load_prefixes(p, task, tok), path)


@SETTINGS
@given(cut=st.integers(0, 400), data=st.data())
def test_corrupting_a_valid_trace_store_is_caught(cut, data, task, tok, tmp_path):
    """A store truncated or with bytes flipped anywhere loads exactly as written or fails with BadInput."""
    from conftest import reference_traces

    from prefixrl.data.traces import save_traces

    path = tmp_path / "ok.parquet"
    traces = reference_traces(task, tok, 3)
    save_traces(path, traces)
    blob = bytearray(path.read_bytes())
    pos = data.draw(st.integers(0, len(blob) - 1))
    blob[pos] ^= data.draw(st.integers(1, 255))
    path.write_bytes(bytes(blob[: len(blob) - cut]) if cut else bytes(blob))
    try:
        loaded, rejected = load_traces(path, task, tok)
    except BadInput as e:
        assert str(path) in str(e)
        return
    assert loaded == traces and not rejected  # the flip hit bytes that carry no data (e.g. statistics)


def test_a_flip_that_breaks_utf8_in_a_string_column_is_bad_input(task, tok, tmp_path):
    """Found by the property above in CI: byte 172 ^ 128 of this store made pyarrow's decoding raise
    UnicodeDecodeError, which escaped the loader."""
    from conftest import reference_traces

    from prefixrl.data.traces import save_traces

    path = tmp_path / "ok.parquet"
    traces = reference_traces(task, tok, 3)
    save_traces(path, traces)
    blob = bytearray(path.read_bytes())
    blob[172] ^= 128
    path.write_bytes(bytes(blob))
    try:
        loaded, rejected = load_traces(path, task, tok)
    except BadInput as e:
        assert str(path) in str(e) and "\n" not in str(e)
    else:
        assert loaded == traces and not rejected


def test_every_bit_of_a_stores_metadata_is_covered_by_its_hash(task, tok, tmp_path):
    """A collection's state and ledger sit in the store's metadata and are read back as results (a resume
    point, the FLOPs charged to PrefixRL): each single-bit flip of that text is refused or changes nothing."""
    from conftest import reference_traces

    from prefixrl.data.traces import charged_flops, save_traces

    path = tmp_path / "ok.parquet"
    traces = reference_traces(task, tok, 2)
    state = {"collection": {"finished": True, "samples": {t.problem_id: 48 for t in traces},
                            "ledger": {"collect/prefill": 1.5e10, "collect/decode": 3.39e10}}}
    save_traces(path, traces, state, tok)
    blob = path.read_bytes()
    start = blob.index(b'{"collection"')
    end = blob.index(b"}}", blob.index(b'"ledger"', start)) + 2
    meta, flops = read_meta(path), charged_flops(path)
    silent = 0
    for pos in range(start, end):
        for bit in range(8):
            bad = bytearray(blob)
            bad[pos] ^= 1 << bit
            path.write_bytes(bytes(bad))
            try:
                same = read_meta(path) == meta and charged_flops(path) == flops
            except BadInput as e:
                assert str(path) in str(e) and "\n" not in str(e)
                continue
            silent += not same
    assert silent == 0 and end - start > 100
