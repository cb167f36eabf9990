use std::cell::Cell;
use std::collections::HashMap;

use super::*;

/// Memory made of regions placed at chosen addresses; optionally rewrites one word after a
/// number of reads (a goroutine that changes while it is read).
#[derive(Default)]
struct Fake {
    regions: HashMap<u64, Vec<u8>>,
    reads: Cell<usize>,
    /// (after this many reads, address, new word)
    change: Option<(usize, u64, u64)>,
}

impl Fake {
    fn put(&mut self, addr: u64, bytes: Vec<u8>) {
        self.regions.insert(addr, bytes);
    }
    fn put_str(&mut self, addr: u64, s: &str) {
        self.put(addr, s.as_bytes().to_vec());
    }
}

impl Memory for Fake {
    fn read(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        let n = self.reads.get() + 1;
        self.reads.set(n);
        let mut out = self.regions.iter().find_map(|(&base, bytes)| {
            let off = usize::try_from(addr.checked_sub(base)?).ok()?;
            bytes.get(off..off.checked_add(len)?).map(<[u8]>::to_vec)
        })?;
        if let Some((after, at, word)) = self.change {
            if n > after && at >= addr && at + 8 <= addr + len as u64 {
                let off = (at - addr) as usize;
                out[off..off + 8].copy_from_slice(&word.to_le_bytes());
            }
        }
        Some(out)
    }
}

const G: u64 = 0x10_0000;
const GOID: u64 = 42;

fn words(ws: &[u64]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn layout(kind: LabelMapKind) -> LabelsLayout {
    LabelsLayout {
        g_labels: 352,
        g_goid: 152,
        g_status: 144,
        kind,
    }
}

/// A `g` with `goid` and `labels` at the layout's offsets.
fn g_bytes(goid: u64, labels: u64) -> Vec<u8> {
    let mut g = vec![0u8; 400];
    g[144..148].copy_from_slice(&0x1004u32.to_le_bytes()); // waiting, being scanned
    g[152..160].copy_from_slice(&goid.to_le_bytes());
    g[352..360].copy_from_slice(&labels.to_le_bytes());
    g
}

/// Go 1.27: g.labels -> labelMap{Set{List: []Label}}.
fn slice_process(pairs: &[(&str, &str)]) -> Fake {
    let mut mem = Fake::default();
    let (set, list, strings) = (0x20_0000, 0x30_0000u64, 0x40_0000u64);
    mem.put(G, g_bytes(GOID, set));
    let n = pairs.len() as u64;
    mem.put(set, words(&[list, n, n]));
    let mut headers = Vec::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        let (ka, va) = (
            strings + i as u64 * 0x1000,
            strings + i as u64 * 0x1000 + 0x800,
        );
        mem.put_str(ka, k);
        mem.put_str(va, v);
        headers.extend([ka, k.len() as u64, va, v.len() as u64]);
    }
    mem.put(list, words(&headers));
    mem
}

fn labels(pairs: &[(&str, &str)]) -> GoLabels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn slice_labels_are_read() {
    let pairs = [("request_id", "r-42"), ("route", "/cache")];
    let mem = slice_process(&pairs);
    let got = read_labels(&mem, &layout(LabelMapKind::Slice), G, GOID, None);
    assert_eq!(got, Some(labels(&pairs)));
}

#[test]
fn no_labels_is_an_empty_set_and_another_goroutine_is_none() {
    let mut mem = Fake::default();
    mem.put(G, g_bytes(GOID, 0));
    let l = layout(LabelMapKind::Slice);
    assert_eq!(read_labels(&mem, &l, G, GOID, None), Some(GoLabels::new()));
    // The g now runs another goroutine: its labels are not this one's.
    assert_eq!(read_labels(&mem, &l, G, GOID + 1, None), None);
    // Unmapped g.
    assert_eq!(read_labels(&mem, &l, 0xdead_0000, GOID, None), None);
}

#[test]
fn a_label_set_swapped_while_read_gives_none() {
    let mut mem = slice_process(&[("request_id", "r-42")]);
    // After the first read of the g, g.labels points elsewhere (pprof.Do returned, say).
    mem.change = Some((1, G + 352, 0x50_0000));
    assert_eq!(
        read_labels(&mem, &layout(LabelMapKind::Slice), G, GOID, None),
        None
    );
}

#[test]
fn bad_pointers_and_absurd_lengths_give_none() {
    let l = layout(LabelMapKind::Slice);
    // len > cap
    let mut mem = slice_process(&[("a", "b")]);
    mem.put(0x20_0000, words(&[0x30_0000, 3, 2]));
    assert_eq!(read_labels(&mem, &l, G, GOID, None), None);
    // list pointer to nowhere
    let mut mem = slice_process(&[("a", "b")]);
    mem.put(0x20_0000, words(&[0x9999_0000, 1, 1]));
    assert_eq!(read_labels(&mem, &l, G, GOID, None), None);
    // a string header with an absurd length
    let mut mem = slice_process(&[("a", "b")]);
    mem.put(0x30_0000, words(&[0x40_0000, 1, 0x40_0800, 1 << 40]));
    assert_eq!(read_labels(&mem, &l, G, GOID, None), None);
}

#[test]
fn labels_are_bounded_in_number_and_length() {
    let long = "x".repeat(1000);
    let keys: Vec<String> = (0..40).map(|i| format!("k{i:02}")).collect();
    let mut pairs: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
    pairs[0].1 = &long;
    let mem = slice_process(&pairs);
    let got = read_labels(&mem, &layout(LabelMapKind::Slice), G, GOID, None).unwrap();
    assert_eq!(got.len(), MAX_LABELS);
    let v = &got["k00"];
    assert!(v.ends_with('…') && v.len() == MAX_LABEL_BYTES + '…'.len_utf8());
    // A cut inside a multi-byte character drops the half.
    assert_eq!(bounded_text("aé".as_bytes().get(..2).unwrap(), true), "a…");
}

/// Go 1.19: g.labels -> map variable -> hmap with buckets of 8 string pairs.
fn map_process(pairs: &[(&str, &str)], b: u8, old: bool) -> Fake {
    let mut mem = Fake::default();
    let (var, hmap, buckets, strings) = (0x20_0000u64, 0x21_0000u64, 0x30_0000u64, 0x40_0000u64);
    mem.put(G, g_bytes(GOID, var));
    mem.put(var, words(&[hmap]));
    let nb = 1usize << b;
    let mut array = vec![0u8; nb * BUCKET_LEN];
    let mut old_array = vec![0u8; BUCKET_LEN];
    for (i, (k, v)) in pairs.iter().enumerate() {
        let (ka, va) = (
            strings + i as u64 * 0x1000,
            strings + i as u64 * 0x1000 + 0x800,
        );
        mem.put_str(ka, k);
        mem.put_str(va, v);
        // Spread over buckets; the last one still in the old buckets when growing.
        let (arr, bucket, slot) = if old && i == pairs.len() - 1 {
            (&mut old_array, 0, 0)
        } else {
            (&mut array, i % nb, i / nb)
        };
        let base = bucket * BUCKET_LEN;
        arr[base + slot] = 0x80 | i as u8;
        let kat = base + BUCKET_KEYS + slot * 16;
        arr[kat..kat + 16].copy_from_slice(&words(&[ka, k.len() as u64]));
        let vat = base + BUCKET_VALUES + slot * 16;
        arr[vat..vat + 16].copy_from_slice(&words(&[va, v.len() as u64]));
    }
    // An evacuated slot in the old bucket is skipped.
    old_array[1] = 2;
    let old_addr: u64 = if old { 0x31_0000 } else { 0 };
    let mut h = vec![0u8; HMAP_LEN];
    h[0..8].copy_from_slice(&(pairs.len() as u64).to_le_bytes());
    h[HMAP_B] = b;
    h[16..24].copy_from_slice(&buckets.to_le_bytes());
    h[24..32].copy_from_slice(&old_addr.to_le_bytes());
    mem.put(hmap, h);
    mem.put(buckets, array);
    if old {
        mem.put(old_addr, old_array);
    }
    mem
}

#[test]
fn map_labels_are_read_from_new_and_old_buckets() {
    let pairs = [("request_id", "r-42"), ("route", "/cache"), ("user", "u7")];
    let l = layout(LabelMapKind::Map);
    for (b, old) in [(0, false), (1, false), (1, true)] {
        let mem = map_process(&pairs, b, old);
        assert_eq!(
            read_labels(&mem, &l, G, GOID, None),
            Some(labels(&pairs)),
            "B={b} growing={old}"
        );
    }
}

#[test]
fn a_map_whose_count_does_not_match_gives_none() {
    let l = layout(LabelMapKind::Map);
    let mut mem = map_process(&[("a", "b"), ("c", "d")], 0, false);
    let mut h = mem.read(0x21_0000, HMAP_LEN).unwrap();
    h[0] = 3;
    mem.put(0x21_0000, h.clone());
    assert_eq!(read_labels(&mem, &l, G, GOID, None), None);
    h[0] = 2;
    h[HMAP_B] = 9;
    mem.put(0x21_0000, h);
    assert_eq!(read_labels(&mem, &l, G, GOID, None), None);
}

#[test]
fn layout_follows_dwarf_then_measured_versions() {
    let v = |minor| GoVersion {
        major: 1,
        minor,
        patch: 0,
        raw: format!("go1.{minor}"),
    };
    let (mut off, _) = super::super::offsets::table_offsets(&v(27)).unwrap();
    let kind = |shape, minor| layout_kind(&off, shape, &v(minor));
    assert_eq!(kind(Some(TypeShape::Struct), 23), Some(LabelMapKind::Slice));
    assert_eq!(kind(Some(TypeShape::Other), 23), Some(LabelMapKind::Map));
    assert_eq!(kind(None, 19), Some(LabelMapKind::Map));
    assert_eq!(kind(None, 27), Some(LabelMapKind::Slice));
    assert_eq!(kind(None, 23), None);
    off.g_labels = None;
    assert_eq!(layout_kind(&off, Some(TypeShape::Struct), &v(27)), None);
}

fn layout_kind(off: &GOffsets, shape: Option<TypeShape>, v: &GoVersion) -> Option<LabelMapKind> {
    super::layout(Some(off), shape, v).map(|l| l.kind)
}

#[test]
fn labels_seen_by_a_probe_count_only_while_the_goroutine_still_holds_them() {
    let mem = slice_process(&[("request_id", "r-42")]);
    let l = layout(LabelMapKind::Slice);
    assert_eq!(
        read_labels(&mem, &l, G, GOID, Some(0x20_0000)),
        Some(labels(&[("request_id", "r-42")]))
    );
    // It holds another set now (a later request): not the labels of the wait.
    assert_eq!(read_labels(&mem, &l, G, GOID, Some(0x60_0000)), None);
    // It had none then.
    assert_eq!(
        read_labels(&mem, &l, G, GOID, Some(0)),
        Some(GoLabels::new())
    );
}

#[test]
fn a_goroutine_no_longer_parked_has_no_labels_of_its_wait() {
    let mut mem = slice_process(&[("request_id", "r-42")]);
    let l = layout(LabelMapKind::Slice);
    let mut g = mem.read(G, 400).unwrap();
    g[144..148].copy_from_slice(&2u32.to_le_bytes()); // running
    mem.put(G, g);
    assert_eq!(read_labels(&mem, &l, G, GOID, None), None);
    // A probe saw the set at its wake-up, and it still holds it: those are the wait's labels.
    assert_eq!(
        read_labels(&mem, &l, G, GOID, Some(0x20_0000)),
        Some(labels(&[("request_id", "r-42")]))
    );
}
