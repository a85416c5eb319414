//! The relay's union merge gives git's bytes: each case is merged by `git merge-file
//! --union` and by `rules::union::merge_text`, and the outputs must be equal. git is part of
//! the machine's set-up; without it these tests fail.

use std::process::Command;

use build_relay::rules::union::{FileMerge, merge_text};

/// What `git merge-file -p --union ours ancestor theirs` prints.
fn git_union(ancestor: &[u8], ours: &[u8], theirs: &[u8]) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!(
        "relay-merge-file-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, content: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    let (o, a, t) = (
        write("ours", ours),
        write("ancestor", ancestor),
        write("theirs", theirs),
    );
    let output = Command::new("git")
        .args(["merge-file", "-p", "--union"])
        .args([&o, &a, &t].map(|p: &std::path::PathBuf| p.as_os_str().to_owned()))
        .output()
        .unwrap_or_else(|e| panic!("git merge-file could not run (is git installed?): {e}"));
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        output.status.success(),
        "git merge-file --union failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

fn assert_as_git(case: &str, ancestor: &[u8], ours: &[u8], theirs: &[u8]) {
    let git = git_union(ancestor, ours, theirs);
    let FileMerge::Merged(relay) = merge_text(ancestor, ours, theirs, true) else {
        panic!("{case}: a union merge never leaves a conflict");
    };
    assert_eq!(
        String::from_utf8_lossy(&relay),
        String::from_utf8_lossy(&git),
        "{case}"
    );
    assert_eq!(relay, git, "{case}: bytes");
}

#[test]
fn a_line_appended_on_both_sides() {
    assert_as_git(
        "append",
        b"a.com\nb.com\n",
        b"a.com\nb.com\nfirst.com\n",
        b"a.com\nb.com\nsecond.com\n",
    );
}

#[test]
fn the_same_line_appended_on_both_sides_is_kept_once() {
    assert_as_git(
        "same line",
        b"a.com\nb.com\n",
        b"a.com\nb.com\nsame.com\n",
        b"a.com\nb.com\nsame.com\n",
    );
}

#[test]
fn several_lines_on_each_side_far_apart() {
    assert_as_git(
        "several",
        b"a\nb\nc\nd\ne\nf\ng\nh\n",
        b"a\nb\nours-1\nc\nd\ne\nf\ng\nh\nours-2\nours-3\n",
        b"a\nb\ntheirs-1\nc\nd\ne\nf\ng\nh\ntheirs-2\n",
    );
}

#[test]
fn a_file_added_on_one_side() {
    assert_as_git("added by theirs", b"", b"", b"new.com\n");
    assert_as_git("added by ours", b"", b"new.com\n", b"");
}

#[test]
fn a_file_added_on_both_sides() {
    assert_as_git("add/add", b"", b"ours.com\n", b"theirs.com\n");
}

#[test]
fn a_file_emptied_on_one_side() {
    assert_as_git("deleted by theirs", b"a\nb\n", b"a\nb\n", b"");
    assert_as_git(
        "deleted by theirs, changed by ours",
        b"a\nb\n",
        b"a\nb\nc\n",
        b"",
    );
}

#[test]
fn crlf_line_endings() {
    assert_as_git(
        "crlf",
        b"a.com\r\nb.com\r\n",
        b"a.com\r\nb.com\r\nfirst.com\r\n",
        b"a.com\r\nb.com\r\nsecond.com\r\n",
    );
}

#[test]
fn no_newline_at_the_end() {
    assert_as_git(
        "no final newline",
        b"a.com\nb.com",
        b"a.com\nb.com\nfirst.com",
        b"a.com\nb.com\nsecond.com",
    );
    assert_as_git(
        "no final newline in the ancestor only",
        b"a.com",
        b"a.com\nfirst.com\n",
        b"a.com\nsecond.com\n",
    );
}

#[test]
fn an_empty_file() {
    assert_as_git("all empty", b"", b"", b"");
    assert_as_git("empty ancestor and ours", b"", b"", b"x\n");
}

#[test]
fn lines_removed_on_both_sides() {
    assert_as_git(
        "touching removals",
        b"a.com\nb.com\n",
        b"b.com\n",
        b"a.com\n",
    );
    assert_as_git(
        "removals apart",
        b"a\nb\nc\nd\ne\nf\ng\nh\n",
        b"a\nc\nd\ne\nf\ng\nh\n",
        b"a\nb\nc\nd\ne\nf\nh\n",
    );
    assert_as_git(
        "a removal beside an append",
        b"a\nb\nc\n",
        b"a\nb\n",
        b"a\nb\nc\nd\n",
    );
}

#[test]
fn conflicts_within_three_lines_become_one_region_as_in_git() {
    assert_as_git(
        "close conflicts",
        b"a\nb\nc\nd\n",
        b"a\nb\nours-1\nc\nd\nours-2\nours-3\n",
        b"a\nb\ntheirs-1\nc\nd\ntheirs-2\n",
    );
}
