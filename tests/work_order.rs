//! `work_order::longest_first_rank` (the block-sparse dK/dV grid's order): a permutation that
//! sorts by descending work, ties in index order, checked against the standard library's stable
//! sort on random, tied and degenerate inputs.
use flashattn_kernels::work_order::longest_first_rank;
use rand::{Rng, SeedableRng};

/// The item at each position of the order (what the preprocessing writes to `key_block_order`).
fn order_of(work: &[u32]) -> Vec<usize> {
    let mut order = vec![usize::MAX; work.len()];
    for j in 0..work.len() {
        let rank = longest_first_rank(|i| work[i], j, work.len());
        assert_eq!(order[rank], usize::MAX, "two items ranked {rank} in {work:?}");
        order[rank] = j;
    }
    order
}

fn expected(work: &[u32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..work.len()).collect();
    idx.sort_by_key(|&i| std::cmp::Reverse(work[i])); // stable: ties keep index order
    idx
}

#[test]
fn equal_work_keeps_grid_order() {
    assert_eq!(order_of(&[7; 9]), (0..9).collect::<Vec<_>>());
}

#[test]
fn longest_first_with_ties_in_index_order() {
    assert_eq!(order_of(&[1, 5, 0, 5, 3]), vec![1, 3, 4, 0, 2]);
    assert_eq!(order_of(&[]), Vec::<usize>::new());
    assert_eq!(order_of(&[4]), vec![0]);
}

#[test]
fn random_work_matches_a_stable_sort() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for _ in 0..300 {
        let n = rng.random_range(1..300);
        let top = rng.random_range(1..40u32); // few values: many ties
        let work: Vec<u32> = (0..n).map(|_| rng.random_range(0..top)).collect();
        assert_eq!(order_of(&work), expected(&work), "work {work:?}");
    }
}
