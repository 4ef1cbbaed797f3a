"""check_store: the check pass's per-file results, kept in SQLite and written row by row."""

import threading

from alexnet_exp.check_store import CheckStore

STAMPS = (1000, 1, 2, 3)
GOOD = (None, "d1g3st", 6, 224)


def test_a_row_serves_the_same_stamps_at_its_level_or_a_lesser_one(tmp_path):
    store = CheckStore(tmp_path / "c.sqlite")
    store.save({"/a.jpg": (STAMPS, "full", GOOD),
                "/b.jpg": (STAMPS, "header", (None, None, 1, 80)),
                "/c.jpg": (STAMPS, "full", ("empty file (0 bytes)", None, 1, 0))})
    store.close()
    again = CheckStore(tmp_path / "c.sqlite")
    stamps = {"/a.jpg": STAMPS, "/b.jpg": STAMPS, "/c.jpg": STAMPS}
    assert set(again.known(stamps, "full")) == {"/a.jpg", "/c.jpg"}  # b: header only
    # A header check takes a full check's pass without the digest (it looks for no copies),
    # and checks a file the full check refused again: what it keeps is its own verdict.
    assert again.known(stamps, "header") == {"/a.jpg": (None, None, 6, 224),
                                             "/b.jpg": (None, None, 1, 80)}
    touched = {**stamps, "/a.jpg": (1000, 1, 9, 3)}  # rewritten: a new ctime
    assert set(again.known(touched, "full")) == {"/c.jpg"}


def test_saving_writes_the_files_checked_now_and_keeps_the_others(tmp_path):
    store = CheckStore(tmp_path / "c.sqlite")
    store.save({f"/{i}.jpg": (STAMPS, "full", GOOD) for i in range(1000)})
    store.save({"/7.jpg": ((5, 5, 5, 5), "full", ("truncated file", None, 1, 0))})
    stamps = {f"/{i}.jpg": STAMPS for i in range(1000)}
    stamps["/7.jpg"] = (5, 5, 5, 5)
    known = store.known(stamps, "full")
    assert len(known) == 1000 and known["/7.jpg"] == ("truncated file", None, 1, 0)


def test_jobs_checking_one_root_at_once_lose_no_row(tmp_path):
    """Parallel sweep jobs scan the same root: each store writes its own files' rows."""
    def job(first: int) -> None:
        store = CheckStore(tmp_path / "c.sqlite")
        for start in range(first, first + 400, 50):
            store.save({f"/{i}.jpg": (STAMPS, "full", GOOD) for i in range(start, start + 50)})
        store.close()

    threads = [threading.Thread(target=job, args=(n * 400,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stamps = {f"/{i}.jpg": STAMPS for i in range(1600)}
    assert len(CheckStore(tmp_path / "c.sqlite").known(stamps, "full")) == 1600


def test_a_cache_folder_that_cannot_be_made_costs_a_recheck_not_an_error(tmp_path):
    (tmp_path / "home").write_text("a file where the cache folder should be")
    store = CheckStore(tmp_path / "home" / "checks" / "c.sqlite")
    store.save({"/a.jpg": (STAMPS, "full", GOOD)})
    assert store.known({"/a.jpg": STAMPS}, "full") == {}


def test_a_file_that_is_no_database_is_replaced_by_a_new_store(tmp_path):
    """A torn store would otherwise cost a full re-check on every run, never rebuilt."""
    (tmp_path / "c.sqlite").write_bytes(b"not a database, " * 100)
    store = CheckStore(tmp_path / "c.sqlite")
    store.save({"/a.jpg": (STAMPS, "full", GOOD)})
    store.close()
    assert CheckStore(tmp_path / "c.sqlite").known({"/a.jpg": STAMPS}, "full") == {
        "/a.jpg": GOOD}


def test_a_store_with_torn_pages_is_started_afresh(tmp_path):
    store = CheckStore(tmp_path / "c.sqlite")
    store.save({f"/{i}.jpg": (STAMPS, "full", (None, "d" * 32, 1, 0)) for i in range(3000)})
    store.close()
    torn = bytearray((tmp_path / "c.sqlite").read_bytes())
    torn[4096 * 2: 4096 * 6] = b"\xff" * (4096 * 4)  # pages past the header: "malformed"
    (tmp_path / "c.sqlite").write_bytes(bytes(torn))
    stamps = {f"/{i}.jpg": STAMPS for i in range(3000)}
    again = CheckStore(tmp_path / "c.sqlite")
    assert again.known(stamps, "full") == {}  # unreadable: every file is checked again
    again.save({"/1.jpg": (STAMPS, "full", GOOD)})  # and what is checked now is kept
    again.close()
    assert CheckStore(tmp_path / "c.sqlite").known(stamps, "full") == {"/1.jpg": GOOD}


def test_forgetting_all_but_a_listing_drops_only_the_rows_of_files_gone(tmp_path):
    store = CheckStore(tmp_path / "c.sqlite")
    store.save({f"/{i}.jpg": (STAMPS, "full", GOOD) for i in range(5)})
    assert store.forget_all_but({"/0.jpg", "/1.jpg", "/2.jpg", "/new.jpg"}.__contains__) == 2
    stamps = {f"/{i}.jpg": STAMPS for i in range(5)}
    assert set(store.known(stamps, "full")) == {"/0.jpg", "/1.jpg", "/2.jpg"}
    assert store.forget_all_but(stamps.__contains__) == 0  # the rows known() read: all listed
    assert store.forget_all_but({"/0.jpg"}.__contains__) == 2  # from known()'s read, as stored
    assert store.forget_all_but({"/0.jpg"}.__contains__) == 0  # and not counted twice
    store.close()
    assert set(CheckStore(tmp_path / "c.sqlite").known(stamps, "full")) == {"/0.jpg"}
