//! The pattern census: every connected graph on a few nodes, up to isomorphism.
//!
//! A structural trigger of `n` nodes is one of few shapes (2 connected graphs on 3 nodes, 6 on
//! 4, 21 on 5), so besides the generator's proposal every shape can simply be tried and judged
//! by the same backdoor evidence. The generator follows the gradient of an embedding objective
//! and lands on a neighbouring shape about as often as on the planted one (cliques where the
//! attacker planted a clique minus one edge); the census cannot miss the planted shape when it
//! is among the sizes searched. It covers topology only: node features that do not derive from
//! structure stay the graph's own, as Sub-BA, Exp-BA and Motif-BA leave them.

use super::recovery::Pattern;
use crate::montage::slot_pairs;

/// Largest pattern the census enumerates: 5 nodes means 2^10 edge sets times 120 relabellings;
/// 6 would be 2^15 times 720, and 112 shapes to measure per size.
pub const MAX_CENSUS_NODES: usize = 5;

/// Every connected graph on `n` nodes up to isomorphism (empty above [`MAX_CENSUS_NODES`]),
/// fewest edges first, each given by its smallest edge bitmask over [`slot_pairs`].
pub fn connected_patterns(n: usize) -> Vec<Pattern> {
    if !(2..=MAX_CENSUS_NODES).contains(&n) {
        return Vec::new();
    }
    let pairs = slot_pairs(n);
    let index_of = |i: usize, j: usize| pairs.iter().position(|&p| p == (i.min(j), i.max(j))).expect("a slot pair");
    let permutations = permutations(n);
    // For each permutation, where each pair's bit goes.
    let pair_maps: Vec<Vec<usize>> =
        permutations.iter().map(|perm| pairs.iter().map(|&(i, j)| index_of(perm[i], perm[j])).collect()).collect();
    let mut canonical: Vec<u32> = (0u32..1 << pairs.len())
        .filter(|&mask| is_connected(n, &pairs, mask))
        .map(|mask| {
            pair_maps
                .iter()
                .map(|map| map.iter().enumerate().filter(|&(p, _)| mask >> p & 1 == 1).fold(0u32, |acc, (_, &q)| acc | 1 << q))
                .min()
                .expect("at least the identity permutation")
        })
        .collect();
    canonical.sort_unstable_by_key(|&mask| (mask.count_ones(), mask));
    canonical.dedup();
    canonical
        .into_iter()
        .map(|mask| Pattern {
            size: n,
            edges: pairs.iter().enumerate().filter(|&(p, _)| mask >> p & 1 == 1).map(|(_, &e)| e).collect(),
            slot_features: None,
        })
        .collect()
}

fn is_connected(n: usize, pairs: &[(usize, usize)], mask: u32) -> bool {
    let mut reached = 1u32;
    loop {
        let mut grown = reached;
        for (p, &(i, j)) in pairs.iter().enumerate() {
            if mask >> p & 1 == 1 && (grown >> i & 1 == 1 || grown >> j & 1 == 1) {
                grown |= 1 << i | 1 << j;
            }
        }
        if grown == reached {
            return reached.count_ones() as usize == n;
        }
        reached = grown;
    }
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    fn extend(prefix: &mut Vec<usize>, used: &mut [bool], out: &mut Vec<Vec<usize>>) {
        if prefix.len() == used.len() {
            out.push(prefix.clone());
            return;
        }
        for v in 0..used.len() {
            if !used[v] {
                used[v] = true;
                prefix.push(v);
                extend(prefix, used, out);
                prefix.pop();
                used[v] = false;
            }
        }
    }
    let mut out = Vec::new();
    extend(&mut Vec::with_capacity(n), &mut vec![false; n], &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_the_number_of_connected_graphs() {
        // OEIS A001349: connected graphs on 2, 3, 4, 5 nodes.
        let counts: Vec<usize> = (2..=5).map(|n| connected_patterns(n).len()).collect();
        assert_eq!(counts, vec![1, 2, 6, 21]);
        assert!(connected_patterns(6).is_empty());
    }

    #[test]
    fn every_pattern_is_connected_and_they_are_pairwise_distinct_shapes() {
        for n in 2..=5 {
            let patterns = connected_patterns(n);
            for p in &patterns {
                assert!(p.is_connected(), "{p:?}");
                assert!(p.edges.iter().all(|&(i, j)| i < j && j < n));
            }
            // Degree sequences plus edge counts separate the shapes of 4 nodes completely.
            if n == 4 {
                let mut signatures: Vec<Vec<usize>> = patterns
                    .iter()
                    .map(|p| {
                        let mut d = vec![0; n];
                        p.edges.iter().for_each(|&(i, j)| {
                            d[i] += 1;
                            d[j] += 1;
                        });
                        d.sort_unstable();
                        d
                    })
                    .collect();
                signatures.sort();
                signatures.dedup();
                assert_eq!(signatures.len(), 6);
            }
        }
        // The 4-node shapes include the clique minus one edge (5 edges) and the clique (6).
        let edge_counts: Vec<usize> = connected_patterns(4).iter().map(|p| p.edges.len()).collect();
        assert_eq!(edge_counts, vec![3, 3, 4, 4, 5, 6]);
    }
}
