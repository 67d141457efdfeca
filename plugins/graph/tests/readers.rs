//! The graph readers: the embedded Cora files, npz archives written here
//! (stored and deflated, any integer width), malformed npz archives, and
//! the edge-list format with its malformed lines.

use std::io::Write;

use parallax_graph::edge_list::read_edge_list;
use parallax_graph::npz::{read_graph, Npz};
use parallax_graph::sources::{CORA_NPZ, CORA_PUBLIC_NPZ};

/// A `.npy` file of `values` (little-endian `descr`, e.g. `<i4`).
fn npy(descr: &str, shape: &[usize], bytes: Vec<u8>) -> Vec<u8> {
    let shape = match shape {
        [n] => format!("({n},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(bytes);
    out
}

fn i32s(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn i64s(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// An npz archive of `members` (name without `.npy`, content).
fn npz(members: &[(&str, Vec<u8>)], deflate: bool) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, data) in members {
        w.start_file(format!("{name}.npy"), opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A 4-node graph: edges 0->1, 1->2, 2->2 (a self-loop), 3->0 twice;
/// 3 features; labels 0, 1, 1, -1; optionally a split.
fn members(split: bool) -> Vec<(&'static str, Vec<u8>)> {
    let mut m = vec![
        ("adj_data", npy("<f4", &[5], f32s(&[1.0; 5]))),
        ("adj_indices", npy("<i4", &[5], i32s(&[1, 2, 2, 0, 0]))),
        ("adj_indptr", npy("<i4", &[5], i32s(&[0, 1, 3, 3, 5]))),
        ("adj_shape", npy("<i8", &[2], i64s(&[4, 4]))),
        ("attr_data", npy("<f4", &[4], f32s(&[1.0, 2.0, 1.0, 1.0]))),
        ("attr_indices", npy("<i4", &[4], i32s(&[0, 2, 1, 0]))),
        ("attr_indptr", npy("<i8", &[5], i64s(&[0, 2, 3, 4, 4]))),
        ("attr_shape", npy("<i8", &[2], i64s(&[4, 3]))),
        ("labels", npy("|i1", &[4], vec![0, 1, 1, 0xff])),
    ];
    if split {
        m.push(("idx_train", npy("<i8", &[1], i64s(&[0]))));
        m.push(("idx_val", npy("<i8", &[1], i64s(&[1]))));
        m.push(("idx_test", npy("<i8", &[1], i64s(&[2]))));
    }
    m
}

#[test]
fn embedded_cora_has_the_published_sizes() {
    let g = read_graph(&Npz::from_bytes("cora", CORA_NPZ).unwrap(), "cora", false).unwrap();
    assert_eq!(g.num_nodes(), 2708);
    assert_eq!(g.num_features(), 1433);
    assert_eq!(g.num_classes, 7);
    assert!(g.split.is_none());
    // undirected: every edge stored both ways, no self-loops
    let t = g.edges.transpose();
    assert_eq!(t, g.edges);
    assert!(g.edges.entries().all(|(r, c, v)| r != c && v == 1.0));

    let p = read_graph(
        &Npz::from_bytes("cora.public", CORA_PUBLIC_NPZ).unwrap(),
        "p",
        false,
    )
    .unwrap();
    assert_eq!(
        (p.num_nodes(), p.num_features(), p.num_classes),
        (2708, 1433, 7)
    );
    assert_eq!(p.num_edges(), 2 * 5278);
    let s = p.split.as_ref().unwrap();
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (140, 500, 1000));
    assert_eq!(s.train, (0..140).collect::<Vec<_>>());
}

#[test]
fn npz_members_of_any_width_stored_or_deflated() {
    for deflate in [false, true] {
        let bytes = npz(&members(true), deflate);
        let g = read_graph(&Npz::from_bytes("t.npz", &bytes).unwrap(), "t", false).unwrap();
        assert_eq!(g.num_nodes(), 4);
        assert_eq!(g.labels, vec![0, 1, 1, -1]);
        assert_eq!(g.num_classes, 2);
        // undirected, self-loop dropped, the duplicate 3->0 kept once
        let dense = g.edges.to_dense();
        let want = [
            0., 1., 0., 1., //
            1., 0., 1., 0., //
            0., 1., 0., 0., //
            1., 0., 0., 0.,
        ];
        assert_eq!(dense, want);
        assert_eq!(g.features.to_dense()[..3], [1.0, 0.0, 2.0]);
        assert_eq!(g.split.as_ref().unwrap().test, vec![2]);
        // directed keeps one direction: row = target
        let d = read_graph(&Npz::from_bytes("t.npz", &bytes).unwrap(), "t", true).unwrap();
        assert_eq!(d.num_edges(), 3);
        assert_eq!(d.edges.row(1).0, &[0]);
    }
}

fn npz_error(m: Vec<(&'static str, Vec<u8>)>) -> String {
    let bytes = npz(&m, false);
    match Npz::from_bytes("bad.npz", &bytes) {
        Err(e) => e.to_string(),
        Ok(z) => read_graph(&z, "bad", false).unwrap_err().to_string(),
    }
}

fn replace(name: &'static str, data: Vec<u8>) -> Vec<(&'static str, Vec<u8>)> {
    let mut m = members(true);
    for (k, v) in m.iter_mut() {
        if *k == name {
            *v = data.clone();
        }
    }
    m
}

#[test]
fn malformed_npz_archives_are_errors_naming_the_file_and_array() {
    let e = Npz::from_bytes("junk.npz", b"not a zip at all")
        .unwrap_err()
        .to_string();
    assert!(e.contains("junk.npz") && e.contains("zip"), "{e}");
    let full = npz(&members(false), false);
    let e = Npz::from_bytes("cut.npz", &full[..full.len() / 2])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cut.npz"), "{e}");

    let m: Vec<_> = members(false)
        .into_iter()
        .filter(|(k, _)| *k != "labels")
        .collect();
    let e = npz_error(m);
    assert!(
        e.contains("bad.npz") && e.contains("labels") && e.contains("missing"),
        "{e}"
    );

    let e = npz_error(replace(
        "adj_indices",
        npy("<i4", &[5], i32s(&[1, 2, 9, 0, 0])),
    ));
    assert!(e.contains("column index 9"), "{e}");
    let e = npz_error(replace(
        "adj_indptr",
        npy("<i4", &[5], i32s(&[0, 3, 1, 3, 5])),
    ));
    assert!(e.contains("indptr decreases"), "{e}");
    let e = npz_error(replace("adj_shape", npy("<i8", &[3], i64s(&[4, 4, 4]))));
    assert!(e.contains("adj_shape") && e.contains("two entries"), "{e}");
    // a header that claims far more data than the member holds
    let e = npz_error(replace(
        "attr_data",
        npy("<f4", &[1 << 40], f32s(&[1.0; 4])),
    ));
    assert!(e.contains("attr_data") && e.contains("claims"), "{e}");
    let e = npz_error(replace("labels", npy("<f4", &[4], f32s(&[0.0; 4]))));
    assert!(e.contains("labels") && e.contains("not an integer"), "{e}");
    let e = npz_error(replace("labels", npy("|i1", &[3], vec![0, 1, 1])));
    assert!(e.contains("3 labels for 4 nodes"), "{e}");
    let e = npz_error(replace("idx_test", npy("<i8", &[1], i64s(&[7]))));
    assert!(e.contains("idx_test") && e.contains("node 7"), "{e}");
    let e = npz_error(replace("idx_test", npy("<i8", &[1], i64s(&[0]))));
    assert!(e.contains("more than one split"), "{e}");
    // node 3 has no label and cannot be in a split
    let e = npz_error(replace("idx_test", npy("<i8", &[1], i64s(&[3]))));
    assert!(e.contains("has no label"), "{e}");
    let e = npz_error(replace("attr_data", b"\x93NUMPY garbage".to_vec()));
    assert!(e.contains("attr_data"), "{e}");
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn edge_lists_read_with_gcn_conventions() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "feats.tsv",
        "# node features\na\t1\t0\nb\t0\t2\nc\t0.5\t0.5\n",
    );
    let e = write(dir.path(), "edges.csv", "a,b\nb,c\nc,c\nb,a\n\n");
    let l = write(dir.path(), "labels.txt", "a 10\nc 2\n");
    let g = read_edge_list(&f, &e, Some(&l), false).unwrap();
    assert_eq!(g.num_nodes(), 3);
    assert_eq!(g.features.to_dense(), vec![1.0, 0.0, 0.0, 2.0, 0.5, 0.5]);
    // a-b (given both ways) once per direction, b-c both ways, c-c dropped
    assert_eq!(g.num_edges(), 4);
    assert_eq!(g.edges.transpose(), g.edges);
    // classes sorted numerically: 2 -> 0, 10 -> 1; b has none
    assert_eq!(g.labels, vec![1, -1, 0]);
    assert_eq!(g.num_classes, 2);
    let d = read_edge_list(&f, &e, None, true).unwrap();
    assert_eq!(d.num_edges(), 3);
    assert!(d.labels.iter().all(|&l| l == -1));
}

#[test]
fn malformed_edge_list_lines_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = write(d, "f.txt", "a 1 0\nb 0 1\n");
    let e = write(d, "e.txt", "a b\n");
    let check =
        |f: &std::path::Path, e: &std::path::Path, l: Option<&std::path::Path>, want: &[&str]| {
            let err = read_edge_list(f, e, l, false).unwrap_err().to_string();
            for w in want {
                assert!(err.contains(w), "`{w}` not in: {err}");
            }
        };
    check(
        &write(d, "f1.txt", "a 1 0\nb 1\n"),
        &e,
        None,
        &["f1.txt:2", "1 feature values"],
    );
    check(
        &write(d, "f2.txt", "a 1 x\n"),
        &e,
        None,
        &["f2.txt:1", "`x`"],
    );
    check(
        &write(d, "f3.txt", "a 1 0\na 0 1\n"),
        &e,
        None,
        &["f3.txt:2", "twice"],
    );
    check(
        &write(d, "f4.txt", "a nan 0\n"),
        &e,
        None,
        &["f4.txt:1", "finite"],
    );
    check(
        &write(d, "f5.txt", "a\n"),
        &e,
        None,
        &["f5.txt:1", "no feature values"],
    );
    check(
        &write(d, "f6.txt", "# nothing\n"),
        &e,
        None,
        &["f6.txt", "no nodes"],
    );
    check(
        &f,
        &write(d, "e1.txt", "a b\n\nb z\n"),
        None,
        &["e1.txt:3", "`z`"],
    );
    check(
        &f,
        &write(d, "e2.txt", "a b c\n"),
        None,
        &["e2.txt:1", "3 fields"],
    );
    check(
        &f,
        &e,
        Some(&write(d, "l1.txt", "a 0\nq 1\n")),
        &["l1.txt:2", "`q`"],
    );
    check(
        &f,
        &e,
        Some(&write(d, "l2.txt", "a 0\na 1\n")),
        &["l2.txt:2", "second label"],
    );
    check(
        &f,
        &e,
        Some(&write(d, "l3.txt", "a\n")),
        &["l3.txt:1", "1 fields"],
    );
    check(&f, &e, Some(&d.join("missing.txt")), &["missing.txt"]);
}
