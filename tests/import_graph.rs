//! The house rules of `src/`, checked on the source itself: no import circle between files, and
//! the layers of docs/architecture.md (primitives below the features' settings, the features'
//! settings below the configuration, features never importing the whole configuration).
//!
//! An edge `a -> b` means file `a` names an item through a path that resolves into file `b`:
//! `crate::x::y`, `super::y`, `self::y`, or a child module's name (`mod y;` then `y::z`), with
//! `use` groups (`crate::x::{y, z::w}`) expanded. A path resolves to the longest module prefix
//! that is a file. A child naming its parent (`super::X` from `a/b.rs` into `a/mod.rs`) is how
//! Rust modules are built, not a circle, so that edge is left out, as
//! `/work/shared/hooks/import_circles.py` does. Unlike that script, this one also expands a
//! parent's grouped use of a child (`pub use worker::{JobHandler, Worker};` in a `mod.rs`), and
//! reads `super` inside an inline `mod tests { … }` as the file's own module. Comments, strings
//! and character literals are not read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path inside the crate: `["oncall", "sync"]`; the crate root is `[]`.
type ModPath = Vec<String>;

/// Every `.rs` file under `root`, by the module it defines.
fn files(root: &Path) -> BTreeMap<ModPath, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                // main.rs is the binary's own crate root: its `crate::` is not the library's.
                && path != root.join("main.rs")
            {
                let rel = path
                    .strip_prefix(root)
                    .expect("under root")
                    .with_extension("");
                let mut parts: ModPath = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if matches!(
                    parts.last().map(String::as_str),
                    Some("mod" | "lib" | "main")
                ) {
                    parts.pop();
                }
                out.insert(parts, path);
            }
        }
    }
    out
}

/// The source without comments, and with the contents of string and character literals removed
/// (their quotes stay, so tokens on either side stay apart).
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    while i < c.len() {
        let prev_is_ident = i > 0 && ident(c[i - 1]);
        match c[i] {
            '/' if c.get(i + 1) == Some(&'/') => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if c.get(i + 1) == Some(&'*') => {
                let mut depth = 0;
                while i < c.len() {
                    if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
            }
            // Raw strings: r"…", r#"…"#, br"…" (not an identifier ending in r).
            'r' if !prev_is_ident || (i > 0 && c[i - 1] == 'b' && (i < 2 || !ident(c[i - 2]))) => {
                let mut j = i + 1;
                while c.get(j) == Some(&'#') {
                    j += 1;
                }
                if c.get(j) == Some(&'"') {
                    let hashes = j - i - 1;
                    j += 1;
                    loop {
                        if j >= c.len() {
                            break;
                        }
                        if c[j] == '"' && (1..=hashes).all(|k| c.get(j + k) == Some(&'#')) {
                            j += 1 + hashes;
                            break;
                        }
                        j += 1;
                    }
                    out.push_str("\"\"");
                    i = j;
                } else {
                    out.push('r');
                    i += 1;
                }
            }
            '"' => {
                i += 1;
                while i < c.len() && c[i] != '"' {
                    if c[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            // A character literal ('a', '\n', '\u{1F600}'); a lifetime ('a) is kept.
            '\'' => {
                if c.get(i + 1) == Some(&'\\') {
                    // Past the backslash and the escaped character, so '\'' ends where it should.
                    let mut j = i + 3;
                    while j < c.len() && c[j] != '\'' {
                        j += 1;
                    }
                    i = j + 1;
                    out.push_str("''");
                } else if c.get(i + 2) == Some(&'\'') {
                    i += 3;
                    out.push_str("''");
                } else {
                    out.push('\'');
                    i += 1;
                }
            }
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

fn tokens(text: &str) -> Vec<Tok> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if c[i].is_alphanumeric() || c[i] == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(c[start..i].iter().collect()));
        } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
            out.push(Tok::PathSep);
            i += 2;
        } else {
            if !c[i].is_whitespace() {
                out.push(Tok::Punct(c[i]));
            }
            i += 1;
        }
    }
    out
}

/// Parse the path tree starting at `toks[i]` (just after a `::`): `a`, `a::b`, `{a, b::{c}}`,
/// `a as b`, `*`. Appends every full path to `out`; returns the index after the tree.
fn tree(toks: &[Tok], mut i: usize, prefix: &ModPath, out: &mut Vec<ModPath>) -> usize {
    let mut path = prefix.clone();
    loop {
        match toks.get(i) {
            Some(Tok::Ident(name)) if name == "self" => {
                i += 1;
            }
            Some(Tok::Ident(name)) => {
                path.push(name.clone());
                i += 1;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                loop {
                    match toks.get(i) {
                        Some(Tok::Punct('}')) => return i + 1,
                        Some(Tok::Punct(',')) => i += 1,
                        None => return i,
                        _ => {
                            let next = tree(toks, i, &path, out);
                            i = if next == i { i + 1 } else { next };
                        }
                    }
                }
            }
            _ => {
                out.push(path);
                return i;
            }
        }
        match toks.get(i) {
            Some(Tok::PathSep) => i += 1,
            Some(Tok::Ident(kw)) if kw == "as" => {
                out.push(path);
                return i + 2;
            }
            _ => {
                out.push(path);
                return i;
            }
        }
    }
}

/// Every crate-internal path a file names, as absolute module paths (not yet resolved to files).
fn named_paths(module: &ModPath, src: &str) -> Vec<ModPath> {
    let toks = tokens(&strip(src));
    let children: BTreeSet<String> = toks
        .windows(3)
        .filter_map(|w| match w {
            [Tok::Ident(m), Tok::Ident(name), Tok::Punct(';')] if m == "mod" => Some(name.clone()),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    // Inline modules (`mod tests { … }`) the scan is inside, with the brace depth they opened at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let after_sep = i > 0 && toks[i - 1] == Tok::PathSep;
        match &toks[i] {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            Tok::Ident(m) if m == "mod" => {
                if let (Some(Tok::Ident(name)), Some(Tok::Punct('{'))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    inline.push((name.clone(), depth));
                }
            }
            Tok::Ident(root) if !after_sep && toks.get(i + 1) == Some(&Tok::PathSep) => {
                let here: ModPath = module
                    .iter()
                    .cloned()
                    .chain(inline.iter().map(|(n, _)| n.clone()))
                    .collect();
                let start = match root.as_str() {
                    "crate" => Some(Vec::new()),
                    "self" => Some(here.clone()),
                    "super" => {
                        let mut base = here.clone();
                        base.pop();
                        let mut j = i + 2;
                        while toks.get(j) == Some(&Tok::Ident("super".into()))
                            && toks.get(j + 1) == Some(&Tok::PathSep)
                        {
                            base.pop();
                            j += 2;
                        }
                        i = j - 2;
                        Some(base)
                    }
                    child if inline.is_empty() && children.contains(child) => {
                        let mut base = module.clone();
                        base.push(child.to_string());
                        Some(base)
                    }
                    _ => None,
                };
                if let Some(base) = start {
                    i = tree(&toks, i + 2, &base, &mut out);
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The file-level import graph of the crate rooted at `src`, child-to-parent edges left out.
fn graph(
    src: &Path,
) -> (
    BTreeMap<ModPath, PathBuf>,
    BTreeMap<ModPath, BTreeSet<ModPath>>,
) {
    let files = files(src);
    let resolve = |parts: &ModPath| {
        (0..=parts.len())
            .rev()
            .map(|n| parts[..n].to_vec())
            .find(|prefix| files.contains_key(prefix))
    };
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (module, path) in &files {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let targets = edges.entry(module.clone()).or_default();
        for named in named_paths(module, &text) {
            let Some(target) = resolve(&named) else {
                continue;
            };
            let parent = &module[..module.len().saturating_sub(1)];
            if &target == module || (!module.is_empty() && target.as_slice() == parent) {
                continue;
            }
            targets.insert(target);
        }
    }
    (files, edges)
}

/// Strongly connected groups of more than one file (Tarjan).
fn circles(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<ModPath, usize>,
        low: BTreeMap<ModPath, usize>,
        stack: Vec<ModPath>,
        on_stack: BTreeSet<ModPath>,
        found: Vec<Vec<ModPath>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: &ModPath) {
            let n = self.index.len();
            self.index.insert(v.clone(), n);
            self.low.insert(v.clone(), n);
            self.stack.push(v.clone());
            self.on_stack.insert(v.clone());
            for w in self.edges.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(&w);
                    let done = &w == v;
                    group.push(w);
                    if done {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort();
                    self.found.push(group);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.found
}

/// Each circle as its files, with the edges inside it, for a failure message.
fn describe(
    src: &Path,
    files: &BTreeMap<ModPath, PathBuf>,
    edges: &BTreeMap<ModPath, BTreeSet<ModPath>>,
    found: &[Vec<ModPath>],
) -> String {
    let name = |m: &ModPath| {
        files[m]
            .strip_prefix(src.parent().unwrap_or(src))
            .unwrap_or(&files[m])
            .display()
            .to_string()
    };
    let mut out = String::new();
    for group in found {
        let mut names: Vec<String> = group.iter().map(name).collect();
        names.sort();
        out.push_str(&format!(
            "circle of {} files: {}\n",
            group.len(),
            names.join(", ")
        ));
        for a in group {
            for b in edges[a].iter().filter(|b| group.contains(b)) {
                out.push_str(&format!("    {} -> {}\n", name(a), name(b)));
            }
        }
    }
    out
}

/// This crate's `src/`, or the tree named by `IMPORT_GRAPH_SRC` (to check another checkout, for
/// example `git archive <commit> src | tar -x -C /tmp/old`, against the shell hook).
fn src_dir() -> PathBuf {
    std::env::var_os("IMPORT_GRAPH_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

fn module(s: &str) -> ModPath {
    s.split("::")
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn no_import_circle_between_the_files_of_src() {
    let src = src_dir();
    let (files, edges) = graph(&src);
    assert!(
        files.len() > 50,
        "read {} files from {}",
        files.len(),
        src.display()
    );
    let found = circles(&edges);
    assert!(
        found.is_empty(),
        "import circles between files (docs/architecture.md says where each piece belongs):\n{}",
        describe(&src, &files, &edges, &found)
    );
}

/// The shared primitives: below every feature, they import nothing but each other.
const PRIMITIVES: &[&str] = &["secret", "principals", "settings_check", "clock", "backoff"];

fn is_primitive(m: &ModPath) -> bool {
    m.len() == 1 && PRIMITIVES.contains(&m[0].as_str())
}

/// Top-level directories that are not features: the interaction layer, the clients, the store
/// and the job queue. Every other directory under `src/` is a feature.
const NOT_FEATURES: &[&str] = &["slack", "spinnaker", "store", "jobs"];

fn is_feature_file(m: &ModPath, files: &BTreeMap<ModPath, PathBuf>) -> bool {
    let Some(top) = m.first() else { return false };
    let is_dir = files
        .get(&vec![top.clone()])
        .is_some_and(|p| p.file_name().is_some_and(|f| f == "mod.rs"));
    is_dir && !NOT_FEATURES.contains(&top.as_str())
}

#[test]
fn shared_primitives_import_nothing_above_them() {
    let (_, edges) = graph(&src_dir());
    for p in PRIMITIVES {
        let m = module(p);
        let above: Vec<_> = edges[&m].iter().filter(|t| !is_primitive(t)).collect();
        assert!(above.is_empty(), "src/{p}.rs imports {above:?}");
    }
}

#[test]
fn each_feature_settings_type_imports_only_the_shared_primitives() {
    let (files, edges) = graph(&src_dir());
    let settings: Vec<&ModPath> = files
        .keys()
        .filter(|m| m.len() == 2 && m[1] == "settings")
        .collect();
    for feature in [
        "approvals",
        "pipelines",
        "announcements",
        "status",
        "maintenance",
        "notifiers",
        "oncall",
    ] {
        assert!(
            settings.contains(&&module(&format!("{feature}::settings"))),
            "src/{feature}/settings.rs holds the `{feature}` section"
        );
    }
    for m in settings {
        let other: Vec<_> = edges[m].iter().filter(|t| !is_primitive(t)).collect();
        assert!(
            other.is_empty(),
            "src/{}/settings.rs imports more than the shared primitives: {other:?}",
            m[0]
        );
    }
}

#[test]
fn configuration_composes_the_features_settings_and_no_other_feature_code() {
    let (files, edges) = graph(&src_dir());
    let feature_code: Vec<_> = edges[&module("config")]
        .iter()
        .filter(|t| is_feature_file(t, &files) && t.last().map(String::as_str) != Some("settings"))
        .collect();
    assert!(
        feature_code.is_empty(),
        "src/config.rs imports {feature_code:?}"
    );
}

#[test]
fn features_never_import_the_whole_configuration() {
    let (files, edges) = graph(&src_dir());
    let config = module("config");
    let offenders: Vec<_> = edges
        .iter()
        .filter(|(m, targets)| is_feature_file(m, &files) && targets.contains(&config))
        .map(|(m, _)| files[m].display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "these feature files import crate::config (take your own section instead): {offenders:?}"
    );
}

// The checker itself, on small crates written for the purpose.

fn crate_of(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, text) in files {
        let p = dir.path().join("src").join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    dir
}

fn circles_in(dir: &tempfile::TempDir) -> Vec<Vec<ModPath>> {
    circles(&graph(&dir.path().join("src")).1)
}

#[test]
fn the_checker_finds_a_circle_through_use_groups_and_plain_paths_and_names_its_files() {
    let dir = crate_of(&[
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\npub mod d;\n"),
        ("a.rs", "use crate::b::X;\n"),
        ("b.rs", "use crate::{c::{self, Y}, d};\n"),
        ("c.rs", "fn f() { let _ = crate::a::Z; }\n"),
        ("d.rs", "pub struct D;\n"),
    ]);
    let found = circles_in(&dir);
    assert_eq!(found, vec![vec![module("a"), module("b"), module("c")]]);
    let (files, edges) = graph(&dir.path().join("src"));
    let text = describe(&dir.path().join("src"), &files, &edges, &found);
    assert!(
        text.contains("circle of 3 files: src/a.rs, src/b.rs, src/c.rs"),
        "{text}"
    );
    assert!(text.contains("src/c.rs -> src/a.rs"), "{text}");
}

#[test]
fn a_child_naming_its_parent_is_not_a_circle_but_a_sibling_is() {
    let dir = crate_of(&[
        ("lib.rs", "pub mod f;\n"),
        (
            "f/mod.rs",
            "pub mod x;\npub mod y;\nuse x::Thing;\npub struct Helper;\n",
        ),
        ("f/x.rs", "use super::Helper;\npub struct Thing;\n"),
        ("f/y.rs", "use super::x::Thing;\n"),
    ]);
    assert!(circles_in(&dir).is_empty());
    let dir = crate_of(&[
        ("lib.rs", "pub mod f;\n"),
        ("f/mod.rs", "pub mod x;\npub mod y;\n"),
        ("f/x.rs", "use super::y::B;\npub struct A;\n"),
        ("f/y.rs", "use super::x::A;\npub struct B;\n"),
    ]);
    assert_eq!(circles_in(&dir), vec![vec![module("f::x"), module("f::y")]]);
}

#[test]
fn comments_strings_and_characters_are_not_imports() {
    let dir = crate_of(&[
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        (
            "a.rs",
            "// use crate::b::X;\n/* crate::b::Y /* nested */ crate::b::Z */\nconst S: &str = \"crate::b::W\";\nconst R: &str = r#\"crate::b::V \"quoted\" \"#;\nconst C: char = '\"';\nfn f<'a>(x: &'a str) -> &'a str { x }\n",
        ),
        ("b.rs", "use crate::a::S;\n"),
    ]);
    assert!(circles_in(&dir).is_empty());
}

#[test]
fn a_parent_re_exporting_a_child_in_a_group_is_followed() {
    // The case the shell hook misses: `pub use worker::{Handler, Worker};` in jobs/mod.rs.
    let dir = crate_of(&[
        ("lib.rs", "pub mod jobs;\npub mod state;\n"),
        (
            "jobs/mod.rs",
            "mod worker;\npub use worker::{Handler, Worker};\npub struct Queue;\n",
        ),
        (
            "jobs/worker.rs",
            "use crate::state::State;\npub struct Worker;\n",
        ),
        ("state.rs", "use crate::jobs::Queue;\npub struct State;\n"),
    ]);
    assert_eq!(
        circles_in(&dir),
        vec![vec![
            module("jobs"),
            module("jobs::worker"),
            module("state")
        ]]
    );
}

#[test]
fn super_inside_an_inline_test_module_is_the_file_itself() {
    let dir = crate_of(&[
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        (
            "a.rs",
            "use crate::b::B;\npub struct A;\n#[cfg(test)]\nmod tests {\n    use super::A;\n    use super::super::b::B;\n}\n",
        ),
        (
            "b.rs",
            "pub struct B;\n#[cfg(test)]\nmod tests {\n    use super::B;\n}\n",
        ),
    ]);
    assert!(circles_in(&dir).is_empty());
    let (_, edges) = graph(&dir.path().join("src"));
    assert_eq!(edges[&module("a")], BTreeSet::from([module("b")]));
    assert!(edges[&module("b")].is_empty());
}
