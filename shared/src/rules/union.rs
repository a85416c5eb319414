//! Merging a pull request GitHub will not merge (issue 14), as metasmoke's local clone does:
//! which paths `.gitattributes` gives git's union driver, how the three trees combine, and
//! each file's three-way merge (libgit2's, which is git's xdiff merge: a union resolves a
//! conflict with both sides' lines, the base branch's first).

use std::collections::{BTreeMap, BTreeSet};

/// An entry of a tree: its mode (`100644`, `100755`, `120000`, `160000`) and its object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Git's file mode.
    pub mode: String,
    /// The blob.
    pub sha: String,
}

/// Every entry of a commit's tree but its directories, by path, as GitHub's recursive trees
/// API lists them.
pub type Files = BTreeMap<String, Entry>;

/// Git's regular file modes; anything else (symlinks, submodules) is never merged here.
fn is_regular(mode: &str) -> bool {
    matches!(mode, "100644" | "100755")
}

/// What `.gitattributes` says about the `merge` attribute, line by line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// (pattern, whether the line makes the path union-merged), in file order.
    rules: Vec<(String, bool)>,
}

impl Attributes {
    /// Reads the lines that set, unset or reset `merge` (directly, or through the `binary`
    /// macro, which unsets it). Comments, blank lines and other attributes are skipped.
    pub fn parse(text: &str) -> Self {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let Some(pattern) = words.next() else {
                continue;
            };
            for attribute in words {
                let union = match attribute {
                    "merge=union" => true,
                    "binary" | "-merge" | "!merge" | "merge" => false,
                    other if other.starts_with("merge=") => false,
                    _ => continue,
                };
                rules.push((pattern.to_string(), union));
            }
        }
        Self { rules }
    }

    /// Whether git would merge `path` with its union driver: the last line whose pattern
    /// matches decides. A pattern without a slash matches the file name at any depth; one
    /// with a slash matches the path from the top.
    pub fn is_union(&self, path: &str) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        self.rules
            .iter()
            .rev()
            .find(|(pattern, _)| match pattern.trim_start_matches('/') {
                anchored if pattern.contains('/') => glob(anchored, path),
                bare => glob(bare, name),
            })
            .is_some_and(|(_, union)| *union)
    }
}

fn glob(pattern: &str, value: &str) -> bool {
    gix_glob::wildmatch(
        pattern.into(),
        value.into(),
        gix_glob::wildmatch::Mode::NO_MATCH_SLASH_LITERAL,
    )
}

/// Whether git takes the content to be binary: a NUL byte in its first 8000 bytes.
pub fn is_binary(content: &[u8]) -> bool {
    content.iter().take(8000).any(|&b| b == 0)
}

/// One file's three-way merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileMerge {
    /// The merged content.
    Merged(Vec<u8>),
    /// Conflicts that remain (the file is not union-merged).
    Conflict,
}

/// Merges `ours` (the base branch) and `theirs` (the pull request) from `ancestor` (their
/// merge base) as `git merge-file` does; with `union`, as `git merge-file --union` does.
pub fn merge_text(ancestor: &[u8], ours: &[u8], theirs: &[u8], union: bool) -> FileMerge {
    // One side unchanged: the other side, as git takes it. Besides saving the work, this
    // keeps libgit2 from answering an empty result, which git2 cannot hand out (a null
    // pointer); any other merge keeps a line (deletions that left nothing would touch, and
    // touching changes are a conflict, whose union keeps both sides' lines).
    if ancestor == ours || ours == theirs {
        return FileMerge::Merged(theirs.to_vec());
    }
    if ancestor == theirs {
        return FileMerge::Merged(ours.to_vec());
    }
    // git2 initialises libgit2 in its other entry points, not in merge_file.
    let _ = git2::Oid::from_bytes(&[0; 20]);
    let input = |content| {
        let mut input = git2::MergeFileInput::new();
        input.content(content);
        input
    };
    let mut options = git2::MergeFileOptions::new();
    // `git merge-file` merges at xdiff's "zealous alnum" level.
    options.simplify_alnum(true);
    if union {
        options.favor(git2::FileFavor::Union);
    }
    match git2::merge_file(
        &input(ancestor),
        &input(ours),
        &input(theirs),
        Some(&mut options),
    ) {
        Ok(result) if result.is_automergeable() => FileMerge::Merged(result.content().to_vec()),
        _ => FileMerge::Conflict,
    }
}

/// A path changed on both sides, whose contents must be merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentMerge {
    /// The path.
    pub path: String,
    /// The mode the result gets.
    pub mode: String,
    /// The merge base's blob; `None` when both sides added the file.
    pub ancestor: Option<String>,
    /// The base branch's blob.
    pub ours: String,
    /// The pull request's blob.
    pub theirs: String,
}

/// How the trees of the merge base, the base branch and the pull request combine, before
/// any content is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreePlan {
    /// Paths the pull request alone changed: the entry to set, or `None` to delete.
    pub take_theirs: Vec<(String, Option<Entry>)>,
    /// Paths both sides changed.
    pub contents: Vec<ContentMerge>,
    /// Paths that cannot be merged, with why.
    pub conflicts: Vec<String>,
}

/// Combines the three trees path by path as git's merge does: a path one side changed
/// takes that side; one both changed the same way stays; one both changed differently
/// needs its contents merged, unless one side deleted it, the modes disagree, or it is not
/// a regular file, which are conflicts.
pub fn plan_trees(ancestor: &Files, ours: &Files, theirs: &Files) -> TreePlan {
    let paths: BTreeSet<&String> = ancestor
        .keys()
        .chain(ours.keys())
        .chain(theirs.keys())
        .collect();
    let mut plan = TreePlan::default();
    for path in paths {
        let (a, o, t) = (ancestor.get(path), ours.get(path), theirs.get(path));
        if o == t || a == t {
            continue;
        }
        if a == o {
            plan.take_theirs.push((path.clone(), t.cloned()));
            continue;
        }
        let (Some(o), Some(t)) = (o, t) else {
            plan.conflicts.push(format!(
                "{path} (changed on one side, deleted on the other)"
            ));
            continue;
        };
        let base_mode = a.map(|a| a.mode.as_str());
        let mode = if Some(o.mode.as_str()) == base_mode {
            t.mode.clone()
        } else if Some(t.mode.as_str()) == base_mode || o.mode == t.mode {
            o.mode.clone()
        } else {
            plan.conflicts
                .push(format!("{path} (file mode changed on both sides)"));
            continue;
        };
        if !is_regular(&o.mode) || !is_regular(&t.mode) {
            plan.conflicts.push(format!("{path} (not a regular file)"));
            continue;
        }
        plan.contents.push(ContentMerge {
            path: path.clone(),
            mode,
            ancestor: a.map(|a| a.sha.clone()),
            ours: o.sha.clone(),
            theirs: t.sha.clone(),
        });
    }
    plan
}

/// Merges the contents of every path both sides changed, given each blob's content by sha;
/// `Err` lists every path that cannot be merged, with why (so nothing is written).
pub fn merge_contents(
    contents: &[ContentMerge],
    blob: impl Fn(&str) -> Vec<u8>,
    attributes: &Attributes,
) -> Result<Vec<(ContentMerge, Vec<u8>)>, Vec<String>> {
    let mut merged = Vec::new();
    let mut conflicts = Vec::new();
    for merge in contents {
        let ancestor = merge.ancestor.as_deref().map(&blob).unwrap_or_default();
        let (ours, theirs) = (blob(&merge.ours), blob(&merge.theirs));
        if [&ancestor, &ours, &theirs].iter().any(|c| is_binary(c)) {
            conflicts.push(format!("{} (binary)", merge.path));
            continue;
        }
        let union = attributes.is_union(&merge.path);
        match merge_text(&ancestor, &ours, &theirs, union) {
            FileMerge::Merged(content) => merged.push((merge.clone(), content)),
            FileMerge::Conflict => {
                conflicts.push(format!("{} (not marked merge=union)", merge.path))
            }
        }
    }
    match conflicts.is_empty() {
        true => Ok(merged),
        false => Err(conflicts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sha: &str) -> Entry {
        Entry {
            mode: "100644".into(),
            sha: sha.into(),
        }
    }

    fn files(entries: &[(&str, &str)]) -> Files {
        entries
            .iter()
            .map(|(path, sha)| (path.to_string(), entry(sha)))
            .collect()
    }

    #[test]
    fn smokedetectors_attributes_give_the_blacklists_the_union_driver() {
        let attributes = Attributes::parse(
            "# SmokeDetector\n*.txt text merge=union\n\
             watched_*.txt text merge=union\nrequirements.txt -merge\n\
             docs/*.txt merge=union\n*.png binary\n",
        );
        assert!(attributes.is_union("blacklisted_websites.txt"));
        assert!(attributes.is_union("watched_keywords.txt"));
        assert!(attributes.is_union("docs/notes.txt"));
        assert!(attributes.is_union("deep/dir/bad_keywords.txt"));
        assert!(
            !attributes.is_union("requirements.txt"),
            "a later line unsets it"
        );
        assert!(!attributes.is_union("chatcommands.py"));
        assert!(!attributes.is_union("logo.png"));
        assert!(!Attributes::parse("").is_union("bad_keywords.txt"));
    }

    #[test]
    fn the_trees_combine_as_gits_merge_does() {
        let ancestor = files(&[
            ("same", "1"),
            ("ours", "1"),
            ("theirs", "1"),
            ("both", "1"),
            ("gone", "1"),
            ("clash", "1"),
        ]);
        let ours = files(&[
            ("same", "1"),
            ("ours", "2"),
            ("theirs", "1"),
            ("both", "2"),
            ("clash", "2"),
            ("added", "5"),
        ]);
        let theirs = files(&[
            ("same", "1"),
            ("ours", "1"),
            ("theirs", "3"),
            ("both", "3"),
            ("gone", "1"),
            ("new", "4"),
            ("added", "6"),
        ]);
        let plan = plan_trees(&ancestor, &ours, &theirs);
        assert_eq!(
            plan.take_theirs,
            vec![
                ("new".to_string(), Some(entry("4"))),
                ("theirs".to_string(), Some(entry("3"))),
            ]
        );
        let merged: Vec<(&str, Option<&str>)> = plan
            .contents
            .iter()
            .map(|c| (c.path.as_str(), c.ancestor.as_deref()))
            .collect();
        assert_eq!(merged, [("added", None), ("both", Some("1"))]);
        assert_eq!(
            plan.conflicts,
            ["clash (changed on one side, deleted on the other)"]
        );
    }

    #[test]
    fn lines_appended_on_both_sides_are_both_kept_in_a_union_file() {
        let ancestor = b"a.com\nb.com\n";
        let ours = b"a.com\nb.com\nfirst.com\n";
        let theirs = b"a.com\nb.com\nsecond.com\n";
        assert_eq!(
            merge_text(ancestor, ours, theirs, true),
            FileMerge::Merged(b"a.com\nb.com\nfirst.com\nsecond.com\n".to_vec())
        );
        assert_eq!(
            merge_text(ancestor, ours, theirs, false),
            FileMerge::Conflict
        );
    }

    #[test]
    fn binary_and_non_union_conflicts_are_named() {
        let attributes = Attributes::parse("*.txt merge=union\n");
        let blobs = |sha: &str| -> Vec<u8> {
            match sha {
                "base" => b"x\n".to_vec(),
                "o" => b"x\nours\n".to_vec(),
                "t" => b"x\ntheirs\n".to_vec(),
                "bin-o" => b"\0ours".to_vec(),
                _ => b"\0theirs".to_vec(),
            }
        };
        let merge = |path: &str, ours: &str, theirs: &str| ContentMerge {
            path: path.into(),
            mode: "100644".into(),
            ancestor: Some("base".into()),
            ours: ours.into(),
            theirs: theirs.into(),
        };
        let all = [
            merge("bad_keywords.txt", "o", "t"),
            merge("chatcommands.py", "o", "t"),
            merge("logo.png", "bin-o", "bin-t"),
        ];
        assert_eq!(
            merge_contents(&all, blobs, &attributes),
            Err(vec![
                "chatcommands.py (not marked merge=union)".to_string(),
                "logo.png (binary)".to_string(),
            ])
        );
        let merged = merge_contents(&all[..1], blobs, &attributes).unwrap();
        assert_eq!(merged[0].1, b"x\nours\ntheirs\n");
    }
}
