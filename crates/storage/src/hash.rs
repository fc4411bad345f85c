//! Hashing of cells and keys, value equality and ordering, and the segmented open-addressing
//! slot table shared by every hash index.
//!
//! The hash is a small folded-multiply mix (no dependency, deterministic across runs and
//! machines, so fingerprints of two loads of the same content agree).

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use refract_schema::ValueRef;

const K1: u64 = 0x9E37_79B9_7F4A_7C15;
const K2: u64 = 0xD6E8_FEB8_6659_FD93;
const K3: u64 = 0xA076_1D64_78BD_642F;
const SEED: u64 = 0x2D35_8DCC_AA6C_78A5;

const TAG_NULL: u64 = 0x6E75_6C6C_0000_0001;
const TAG_BOOL: u64 = 0x0000_0000_0000_0002 << 56;
const TAG_INT: u64 = 0x5A5A_0000_0000_0003;
const TAG_FLOAT: u64 = 0x0000_F10A_7000_0004;
const TAG_DEC: u64 = 0x0DEC_0000_0000_0005;
const TAG_BYTES: u64 = 0xB7E5_0000_0000_0006;

#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = (a as u128).wrapping_mul(b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Streaming hash state.
#[derive(Clone, Copy)]
pub(crate) struct Mix(u64);

impl Mix {
    #[inline(always)]
    pub(crate) fn new() -> Mix {
        Mix(SEED)
    }

    #[inline(always)]
    pub(crate) fn write_u64(&mut self, x: u64) {
        self.0 = fold_mul(self.0 ^ x, K1);
    }

    fn write_bytes(&mut self, b: &[u8]) {
        self.write_u64(b.len() as u64 ^ TAG_BYTES);
        let mut words = b.chunks_exact(8);
        for w in &mut words {
            self.write_u64(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let rem = words.remainder();
        if !rem.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rem.len()].copy_from_slice(rem);
            self.write_u64(u64::from_le_bytes(buf));
        }
    }

    /// Hash one cell. Values must be canonical for their column (see `chunk::coerce`), so the
    /// same content always takes the same variant.
    #[inline]
    pub(crate) fn cell(&mut self, v: ValueRef<'_>) {
        match v {
            ValueRef::Null => self.write_u64(TAG_NULL),
            ValueRef::Bool(b) => self.write_u64(TAG_BOOL | b as u64),
            ValueRef::Int(x)
            | ValueRef::Time(x)
            | ValueRef::DateTime(x)
            | ValueRef::Timestamp(x) => self.write_u64(x as u64 ^ TAG_INT),
            ValueRef::Date(d) => self.write_u64(d as i64 as u64 ^ TAG_INT),
            ValueRef::Float(f) => self.write_u64(f.to_bits() ^ TAG_FLOAT),
            ValueRef::Decimal(m) => {
                self.write_u64(m as u64 ^ TAG_DEC);
                self.write_u64((m >> 64) as u64);
            }
            ValueRef::Text(s) | ValueRef::Json(s) => self.write_bytes(s.as_bytes()),
            ValueRef::Bytes(b) => self.write_bytes(b),
        }
    }

    #[inline(always)]
    pub(crate) fn finish(self) -> u64 {
        fold_mul(self.0 ^ K3, K2)
    }
}

/// Hash of a key given as values.
#[inline]
pub(crate) fn hash_key(key: &[ValueRef<'_>]) -> u64 {
    let mut m = Mix::new();
    for &v in key {
        m.cell(v);
    }
    m.finish()
}

/// Exact equality of two canonical cells ([`ValueRef::same`]: floats by bits; NULL equals NULL
/// here, callers exclude NULL keys beforehand).
#[inline]
pub(crate) fn val_eq(a: ValueRef<'_>, b: ValueRef<'_>) -> bool {
    a.same(&b)
}

/// Total order of two canonical cells of one column ([`ValueRef::total_cmp`]: NULL first, then
/// by value; text and bytes by bytes, floats by `total_cmp`).
#[inline]
pub(crate) fn val_cmp(a: ValueRef<'_>, b: ValueRef<'_>) -> Ordering {
    a.total_cmp(&b)
}

/// "No row": empty entry of dense indexes and chains.
pub(crate) const NONE: u32 = u32::MAX;

const EMPTY: u8 = 0;
const TOMB: u8 = 1;
/// Slots per group: a group's tags and ids are adjacent in memory (80 bytes), so a probe
/// usually costs one or two neighbouring cache lines.
const GROUP: usize = 16;
/// log2 of the groups per segment (segments are copied on write independently).
const SEG_GROUPS_SHIFT: u32 = 8;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Bit 7 of every byte of `word` that may equal `b` (exact for "any"; a lane is confirmed by
/// comparing its tag).
#[inline(always)]
fn match_byte(word: u64, b: u8) -> u64 {
    let x = word ^ (LO * b as u64);
    x.wrapping_sub(LO) & !x & HI
}

#[inline(always)]
fn tag_of(h: u64) -> u8 {
    ((h >> 57) as u8) | 0x80
}

/// What a slot holds beside the row id: nothing, or (for integer primary keys) the key itself,
/// so that a hit needs no access to the row.
pub(crate) trait Extra: Copy + Default + fmt::Debug {}
impl Extra for () {}
impl Extra for i64 {}

#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct Group<X> {
    tags: [u8; GROUP],
    ids: [u32; GROUP],
    extra: [X; GROUP],
}

impl<X: Extra> Group<X> {
    fn empty() -> Self {
        Group {
            tags: [EMPTY; GROUP],
            ids: [NONE; GROUP],
            extra: [X::default(); GROUP],
        }
    }

    #[inline(always)]
    fn words(&self) -> [u64; 2] {
        [
            u64::from_le_bytes(self.tags[..8].try_into().expect("8 bytes")),
            u64::from_le_bytes(self.tags[8..].try_into().expect("8 bytes")),
        ]
    }
}

/// Open-addressing hash table of row ids: groups of 16 slots probed linearly, a 7-bit tag per
/// slot to skip most mismatches without touching the rows, tombstones for deletion, at most
/// 7/8 full. Keys are not stored (unless `X` holds them): callers compare candidate rows against
/// the key through the `eq` closure, and give the hash of a row's key through `rehash` when the
/// table grows. The home group of a hash is `(low 32 bits × groups) >> 32`, so the number of
/// groups need not be a power of two. Groups are split into segments held in `Arc`s so that a
/// new version of the table copies only the segments it writes. Positions are
/// `group * 16 + lane`.
#[derive(Clone, Debug)]
pub(crate) struct Slots<X: Extra = ()> {
    segs: Vec<Arc<Vec<Group<X>>>>,
    groups: usize,
    /// Full slots.
    len: usize,
    /// Tombstones.
    tombs: usize,
}

impl<X: Extra> Default for Slots<X> {
    fn default() -> Self {
        Slots {
            segs: Vec::new(),
            groups: 0,
            len: 0,
            tombs: 0,
        }
    }
}

/// Groups for `n` keys about 80% full (room for some inserts before the first growth).
fn groups_for(n: usize) -> usize {
    (n * 5 / 4 + 1).div_ceil(GROUP)
}

impl<X: Extra> Slots<X> {
    /// An empty table sized for `n` keys.
    pub(crate) fn with_capacity(n: usize) -> Self {
        if n == 0 {
            return Slots::default();
        }
        Slots::alloc(groups_for(n))
    }

    fn alloc(groups: usize) -> Self {
        let seg = 1usize << SEG_GROUPS_SHIFT;
        let segs = (0..groups.div_ceil(seg))
            .map(|i| Arc::new(vec![Group::empty(); (groups - i * seg).min(seg)]))
            .collect();
        Slots {
            segs,
            groups,
            len: 0,
            tombs: 0,
        }
    }

    fn cap(&self) -> usize {
        self.groups * GROUP
    }

    #[inline(always)]
    fn home(&self, h: u64) -> usize {
        ((h as u32 as u64 * self.groups as u64) >> 32) as usize
    }

    #[inline(always)]
    fn group(&self, g: usize) -> &Group<X> {
        &self.segs[g >> SEG_GROUPS_SHIFT][g & ((1 << SEG_GROUPS_SHIFT) - 1)]
    }

    fn group_mut(&mut self, g: usize) -> &mut Group<X> {
        &mut Arc::make_mut(&mut self.segs[g >> SEG_GROUPS_SHIFT])[g & ((1 << SEG_GROUPS_SHIFT) - 1)]
    }

    /// Number of keys.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first slot whose entry satisfies `eq` among the slots tagged like `h`.
    #[inline]
    pub(crate) fn find(&self, h: u64, mut eq: impl FnMut(u32, X) -> bool) -> Option<(usize, u32)> {
        if self.groups == 0 {
            return None;
        }
        let tag = tag_of(h);
        let mut g = self.home(h);
        loop {
            let grp = self.group(g);
            let words = grp.words();
            for (half, &w) in words.iter().enumerate() {
                let mut m = match_byte(w, tag);
                while m != 0 {
                    let lane = half * 8 + (m.trailing_zeros() / 8) as usize;
                    m &= m - 1;
                    if grp.tags[lane] == tag && eq(grp.ids[lane], grp.extra[lane]) {
                        return Some((g * GROUP + lane, grp.ids[lane]));
                    }
                }
            }
            if match_byte(words[0], EMPTY) | match_byte(words[1], EMPTY) != 0 {
                return None;
            }
            g += 1;
            if g == self.groups {
                g = 0;
            }
        }
    }

    /// Start loading the group where a probe for hash `h` begins (its tags and ids).
    #[inline]
    pub(crate) fn prefetch(&self, h: u64) {
        if self.groups == 0 {
            return;
        }
        let grp: *const Group<X> = self.group(self.home(h));
        crate::chunk::prefetch(grp.cast());
        crate::chunk::prefetch(grp.cast::<u8>().wrapping_add(64));
    }

    /// Replace the id in slot `pos` (same key).
    pub(crate) fn set(&mut self, pos: usize, id: u32) {
        self.group_mut(pos / GROUP).ids[pos % GROUP] = id;
    }

    /// Replace every id by `f(id)`: same keys, same slots (for tables whose ids are renumbered
    /// once built).
    pub(crate) fn map_ids(&mut self, mut f: impl FnMut(u32) -> u32) {
        for seg in &mut self.segs {
            for grp in Arc::make_mut(seg).iter_mut() {
                for lane in 0..GROUP {
                    if grp.tags[lane] >= 0x80 {
                        grp.ids[lane] = f(grp.ids[lane]);
                    }
                }
            }
        }
    }

    /// Remove the entry in slot `pos` (leaves a tombstone).
    pub(crate) fn remove(&mut self, pos: usize) {
        let grp = self.group_mut(pos / GROUP);
        grp.tags[pos % GROUP] = TOMB;
        grp.ids[pos % GROUP] = NONE;
        self.len -= 1;
        self.tombs += 1;
    }

    /// Insert `id` (with `x`) under hash `h`; the caller made sure its key is absent. `rehash`
    /// gives the hash of an entry already in the table (used when the table grows).
    pub(crate) fn insert(&mut self, h: u64, id: u32, x: X, rehash: impl Fn(u32, X) -> u64) {
        if (self.len + self.tombs + 1) * 8 > self.cap() * 7 {
            self.grow(rehash);
        }
        self.insert_raw(h, id, x);
    }

    fn insert_raw(&mut self, h: u64, id: u32, x: X) {
        let tag = tag_of(h);
        let mut g = self.home(h);
        loop {
            let grp = self.group(g);
            if let Some(lane) = grp.tags.iter().position(|&t| t == EMPTY || t == TOMB) {
                if grp.tags[lane] == TOMB {
                    self.tombs -= 1;
                }
                let grp = self.group_mut(g);
                grp.tags[lane] = tag;
                grp.ids[lane] = id;
                grp.extra[lane] = x;
                self.len += 1;
                return;
            }
            g += 1;
            if g == self.groups {
                g = 0;
            }
        }
    }

    fn grow(&mut self, rehash: impl Fn(u32, X) -> u64) {
        let mut groups = groups_for(self.len + 1);
        if (self.len + 1) * 2 > self.cap() {
            groups = groups.max(self.groups * 2);
        }
        let old = std::mem::replace(self, Slots::alloc(groups.max(1)));
        for seg in &old.segs {
            for grp in seg.iter() {
                for lane in 0..GROUP {
                    if grp.tags[lane] >= 0x80 {
                        let (id, x) = (grp.ids[lane], grp.extra[lane]);
                        self.insert_raw(rehash(id, x), id, x);
                    }
                }
            }
        }
    }

    /// Every entry in the table (any order).
    #[cfg(test)]
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u32, X)> + '_ {
        self.segs.iter().flat_map(|s| {
            s.iter().flat_map(|g| {
                (0..GROUP)
                    .filter(|&l| g.tags[l] >= 0x80)
                    .map(|l| (g.ids[l], g.extra[l]))
            })
        })
    }

    /// Heap bytes.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.segs.capacity() * std::mem::size_of::<usize>()
            + self
                .segs
                .iter()
                .map(|s| 16 + 24 + s.capacity() * std::mem::size_of::<Group<X>>())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_insert_find_remove_grow() {
        // Keys are the ids themselves; a poor hash (many collisions) exercises probing.
        let h = |id: u32| (id as u64 % 7).wrapping_mul(K1);
        let rh = |id: u32, _: ()| h(id);
        let mut s: Slots = Slots::with_capacity(0);
        for id in 0..1000u32 {
            assert!(s.find(h(id), |x, _| x == id).is_none());
            s.insert(h(id), id, (), rh);
        }
        assert_eq!(s.len(), 1000);
        for id in 0..1000u32 {
            assert_eq!(s.find(h(id), |x, _| x == id).map(|p| p.1), Some(id));
        }
        for id in (0..1000u32).step_by(2) {
            let (pos, _) = s.find(h(id), |x, _| x == id).unwrap();
            s.remove(pos);
        }
        for id in 0..1000u32 {
            assert_eq!(s.find(h(id), |x, _| x == id).is_some(), id % 2 == 1);
        }
        for id in 1000..3000u32 {
            s.insert(h(id), id, (), rh);
        }
        let mut all: Vec<u32> = s.entries().map(|e| e.0).collect();
        all.sort_unstable();
        let want: Vec<u32> = (0..1000).filter(|x| x % 2 == 1).chain(1000..3000).collect();
        assert_eq!(all, want);
    }

    #[test]
    fn hash_distinguishes_types_and_values() {
        assert_ne!(hash_key(&[ValueRef::Int(1)]), hash_key(&[ValueRef::Int(2)]));
        assert_ne!(hash_key(&[ValueRef::Null]), hash_key(&[ValueRef::Int(0)]));
        assert_ne!(
            hash_key(&[ValueRef::Text("ab"), ValueRef::Text("c")]),
            hash_key(&[ValueRef::Text("a"), ValueRef::Text("bc")])
        );
        assert_eq!(
            hash_key(&[ValueRef::Text("x")]),
            hash_key(&[ValueRef::Json("x")])
        );
    }
}
