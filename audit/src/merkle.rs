//! RFC 9162 (RFC 6962) Merkle tree hashing and proofs: [`Tree`], which keeps every complete
//! subtree's hash so that roots and proofs of any prefix cost O(log n) hashes, and the same
//! definitions as plain functions over leaf hashes (used by offline verifiers, which have
//! nothing but the leaves, and as the reference the tree is tested against).
//!
//! leaf = SHA-256(0x00 ‖ entry), node = SHA-256(0x01 ‖ left ‖ right); a tree of n > 1 leaves
//! splits at k, the largest power of two smaller than n.

use ring::digest::{Context, SHA256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The hash of one log entry's bytes.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut context = Context::new(&SHA256);
    context.update(&[0x00]);
    context.update(entry);
    finish(context)
}

/// The hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut context = Context::new(&SHA256);
    context.update(&[0x01]);
    context.update(left);
    context.update(right);
    finish(context)
}

fn finish(context: Context) -> Hash {
    let mut hash = [0u8; 32];
    hash.copy_from_slice(context.finish().as_ref());
    hash
}

/// The largest power of two strictly smaller than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The Merkle tree hash (MTH) of `leaves`; the empty tree hashes to SHA-256("").
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => finish(Context::new(&SHA256)),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The inclusion proof of leaf `index` in the tree of `leaves` (RFC 9162 §2.1.3.1).
pub fn inclusion_proof(index: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 || index >= n {
        return Vec::new();
    }
    let k = split(n);
    if index < k {
        let mut proof = inclusion_proof(index, &leaves[..k]);
        proof.push(root(&leaves[k..]));
        proof
    } else {
        let mut proof = inclusion_proof(index - k, &leaves[k..]);
        proof.push(root(&leaves[..k]));
        proof
    }
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], expected_root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *expected_root
}

/// The consistency proof between the first `old` leaves and all `leaves` (RFC 9162 §2.1.4.1).
pub fn consistency_proof(old: usize, leaves: &[Hash]) -> Vec<Hash> {
    if old == 0 || old >= leaves.len() {
        return Vec::new();
    }
    subproof(old, leaves, true)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if complete { Vec::new() } else { vec![root(leaves)] };
    }
    let k = split(n);
    if m <= k {
        let mut proof = subproof(m, &leaves[..k], complete);
        proof.push(root(&leaves[k..]));
        proof
    } else {
        let mut proof = subproof(m - k, &leaves[k..], false);
        proof.push(root(&leaves[..k]));
        proof
    }
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2).
pub fn verify_consistency(old_size: u64, new_size: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> bool {
    if old_size == 0 || old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    let mut proof = proof.to_vec();
    if old_size.is_power_of_two() {
        proof.insert(0, *old_root);
    }
    let Some((first, rest)) = proof.split_first() else { return false };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && fr == *old_root && sr == *new_root
}

/// A growing Merkle tree. `levels[h][i]` is the hash of the complete subtree over leaves
/// `[i·2^h, (i+1)·2^h)`; every such subtree is stored as soon as its last leaf arrives. In a
/// tree of any prefix size the RFC's recursion meets only such subtrees plus O(log n) nodes on
/// the right edge, so roots and proofs never rehash the leaves.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash, completing whatever subtrees it closes.
    pub fn push(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut height = 0;
        while self.levels[height].len().is_multiple_of(2) {
            let level = &self.levels[height];
            let parent = node_hash(&level[level.len() - 2], &level[level.len() - 1]);
            if self.levels.len() == height + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[height + 1].push(parent);
            height += 1;
        }
    }

    /// Leaves in the tree.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// Whether the tree has no leaf.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leaf hashes, in order.
    pub fn leaves(&self) -> &[Hash] {
        self.levels.first().map_or(&[], Vec::as_slice)
    }

    /// MTH of leaves `[start, end)`, `start < end ≤ len`.
    fn range(&self, start: usize, end: usize) -> Hash {
        let n = end - start;
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let height = n.trailing_zeros() as usize;
            return self.levels[height][start >> height];
        }
        let k = split(n);
        node_hash(&self.range(start, start + k), &self.range(start + k, end))
    }

    /// The root of the tree of the first `size` leaves (`size ≤ len`).
    pub fn root(&self, size: u64) -> Hash {
        if size == 0 { root(&[]) } else { self.range(0, size as usize) }
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Vec<Hash> {
        let mut proof = Vec::new();
        if index < size && size <= self.len() {
            self.path(index as usize, 0, size as usize, &mut proof);
        }
        proof
    }

    fn path(&self, index: usize, start: usize, end: usize, proof: &mut Vec<Hash>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if index < start + k {
            self.path(index, start, start + k, proof);
            proof.push(self.range(start + k, end));
        } else {
            self.path(index, start + k, end, proof);
            proof.push(self.range(start, start + k));
        }
    }

    /// The consistency proof between the trees of the first `old` and `new` leaves.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Vec<Hash> {
        let mut proof = Vec::new();
        if old > 0 && old < new && new <= self.len() {
            self.subproof(old as usize, 0, new as usize, true, &mut proof);
        }
        proof
    }

    fn subproof(&self, m: usize, start: usize, end: usize, complete: bool, proof: &mut Vec<Hash>) {
        let n = end - start;
        if m == n {
            if !complete {
                proof.push(self.range(start, end));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, start + k, complete, proof);
            proof.push(self.range(start + k, end));
        } else {
            self.subproof(m - k, start + k, end, false, proof);
            proof.push(self.range(start, start + k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(format!("entry {i}").as_bytes())).collect()
    }

    #[test]
    fn the_empty_tree_is_the_hash_of_nothing_and_small_trees_match_by_hand() {
        assert_eq!(hex::encode(root(&[])), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let l = leaves(3);
        assert_eq!(root(&l), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        let l = leaves(5);
        let left = node_hash(&node_hash(&l[0], &l[1]), &node_hash(&l[2], &l[3]));
        assert_eq!(root(&l), node_hash(&left, &l[4]));
    }

    #[test]
    fn the_tree_gives_the_same_roots_and_proofs_as_the_definitions_for_every_prefix() {
        let all = leaves(70);
        let mut tree = Tree::new();
        for leaf in &all {
            tree.push(*leaf);
        }
        assert_eq!(tree.root(0), root(&[]));
        for size in 1..=all.len() {
            let prefix = &all[..size];
            assert_eq!(tree.root(size as u64), root(prefix), "size {size}");
            for index in 0..size {
                assert_eq!(tree.inclusion_proof(index as u64, size as u64), inclusion_proof(index, prefix));
            }
            for old in 1..=size {
                assert_eq!(tree.consistency_proof(old as u64, size as u64), consistency_proof(old, prefix));
            }
        }
    }

    #[test]
    fn every_leaf_proves_inclusion_and_a_flipped_byte_does_not() {
        for n in 1..=40 {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let proof = inclusion_proof(i, &l);
                assert!(verify_inclusion(i as u64, n as u64, &l[i], &proof, &r), "n={n} i={i}");
                let mut bad = l[i];
                bad[0] ^= 1;
                assert!(!verify_inclusion(i as u64, n as u64, &bad, &proof, &r));
            }
        }
    }

    #[test]
    fn every_prefix_proves_consistency_and_a_wrong_root_does_not() {
        for n in 1..=40 {
            let l = leaves(n);
            let new_root = root(&l);
            for m in 1..=n {
                let old_root = root(&l[..m]);
                let proof = consistency_proof(m, &l);
                assert!(verify_consistency(m as u64, n as u64, &old_root, &new_root, &proof), "m={m} n={n}");
                if m < n {
                    let mut bad = old_root;
                    bad[5] ^= 1;
                    assert!(!verify_consistency(m as u64, n as u64, &bad, &new_root, &proof));
                }
            }
        }
    }
}
