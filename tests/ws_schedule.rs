//! The warp-specialized forward's synchronization protocol (`kernels/src/forward_ws.rs`, with
//! its bookkeeping in `flashattn_kernels::ws_schedule`) run as a model on the CPU: the producer
//! thread and the two consumer warpgroups as step machines, mbarriers with phases and transaction
//! bytes, TMA copies that land at random later times, and the ping-pong named barriers. Random
//! interleavings of every block count up to 9 must finish (no deadlock, no arrival left over),
//! and no copy may overwrite a stage a consumer still reads, nor a consumer read a stage before
//! the block it expects has landed there. No GPU needed; it checks the order of operations the
//! kernel issues, not the hardware.
use flashattn_kernels::ws_schedule::{
    empty_wait_parity, full_parity, hands_over, opens_first_turn, stage, tile_first_row, tile_key_end, STAGES,
};
use rand::{Rng, SeedableRng};

/// An mbarrier: arrivals expected per phase, arrivals and transaction bytes of the current
/// phase, phases completed.
#[derive(Clone, Debug)]
struct MBarrier {
    expected: u32,
    arrived: u32,
    tx_pending: i64,
    completed: u64,
}

impl MBarrier {
    fn new(expected: u32) -> Self {
        MBarrier { expected, arrived: 0, tx_pending: 0, completed: 0 }
    }
    fn settle(&mut self) {
        if self.arrived == self.expected && self.tx_pending == 0 {
            self.completed += 1;
            self.arrived = 0;
        }
    }
    fn arrive(&mut self, expect_tx: i64) {
        assert!(self.arrived < self.expected, "more arrivals than a phase expects: {self:?}");
        self.arrived += 1;
        self.tx_pending += expect_tx;
        self.settle();
    }
    fn complete_tx(&mut self, bytes: i64) {
        self.tx_pending -= bytes;
        assert!(self.tx_pending >= 0, "more bytes than expected: {self:?}");
        self.settle();
    }
    /// `mbarrier.try_wait.parity`: the phase of this parity is the last completed one, i.e. the
    /// current phase's parity differs.
    fn try_wait(&self, parity: u32) -> bool {
        (self.completed % 2) as u32 != parity
    }
}

/// A named barrier of 256 threads used as two warpgroups of 128: `bar.arrive` by one (`handed`),
/// `bar.sync` by the other. A second arrive before the wait would complete the barrier with no
/// waiter (256 arrivals from one side): the model rejects it.
#[derive(Clone, Debug, Default)]
struct NamedBarrier {
    handed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tensor {
    K,
    V,
}

/// Operations of the three actors, in program order (what `forward_ws` issues).
#[derive(Clone, Copy, Debug)]
enum Op {
    /// Producer: wait for the empty barrier of (tensor, stage) at parity.
    WaitEmpty(Tensor, usize, u32),
    /// Producer: arrive.expect_tx on the full barrier and start the copy of block j.
    Copy(Tensor, usize),
    /// Consumer: wait for the full barrier of (tensor, stage) at parity.
    WaitFull(Tensor, usize, u32),
    /// Consumer: `bar.sync` on its own turn barrier.
    SyncTurn,
    /// Consumer: `bar.arrive` on the other's turn barrier.
    HandOver,
    /// Consumer: issue the MMAs reading block j of tensor (until `Release` / `Done`).
    Read(Tensor, usize),
    /// Consumer: the MMAs reading (tensor, block j) completed; arrive on the empty barrier.
    Release(Tensor, usize),
    /// Consumer: the MMAs reading (tensor, block j) completed, no arrival (the last V).
    Done(Tensor, usize),
}

fn producer_ops(n_blocks: usize) -> Vec<Op> {
    let mut ops = Vec::new();
    for j in 0..n_blocks {
        for t in [Tensor::K, Tensor::V] {
            if let Some(p) = empty_wait_parity(j) {
                ops.push(Op::WaitEmpty(t, stage(j), p));
            }
            ops.push(Op::Copy(t, j));
        }
    }
    ops
}

fn consumer_ops(second: bool, n_blocks: usize) -> Vec<Op> {
    let mut ops = Vec::new();
    if opens_first_turn(second, n_blocks) {
        ops.push(Op::HandOver);
    }
    if n_blocks == 0 {
        return ops;
    }
    ops.extend([Op::WaitFull(Tensor::K, stage(0), full_parity(0)), Op::SyncTurn, Op::Read(Tensor::K, 0)]);
    if hands_over(second, 0, n_blocks) {
        ops.push(Op::HandOver);
    }
    ops.push(Op::Release(Tensor::K, 0));
    for j in 1..n_blocks {
        ops.extend([
            Op::WaitFull(Tensor::K, stage(j), full_parity(j)),
            Op::WaitFull(Tensor::V, stage(j - 1), full_parity(j - 1)),
            Op::SyncTurn,
            Op::Read(Tensor::K, j),
            Op::Read(Tensor::V, j - 1),
        ]);
        if hands_over(second, j, n_blocks) {
            ops.push(Op::HandOver);
        }
        ops.extend([Op::Release(Tensor::K, j), Op::Release(Tensor::V, j - 1)]);
    }
    let last = n_blocks - 1;
    ops.extend([
        Op::WaitFull(Tensor::V, stage(last), full_parity(last)),
        Op::Read(Tensor::V, last),
        Op::Done(Tensor::V, last),
    ]);
    ops
}

/// The shared state: barriers, what each stage holds, who reads it, copies in flight.
struct World {
    full: [[MBarrier; STAGES]; 2],
    empty: [[MBarrier; STAGES]; 2],
    turn: [NamedBarrier; 2],
    /// Block landed in (tensor, stage), if any.
    holds: [[Option<usize>; STAGES]; 2],
    /// Consumers reading (tensor, stage).
    readers: [[u32; STAGES]; 2],
    /// Copies in flight: (tensor, block).
    in_flight: Vec<(Tensor, usize)>,
}

const TILE_BYTES: i64 = 32768;

fn ti(t: Tensor) -> usize {
    t as usize
}

impl World {
    fn new() -> Self {
        World {
            full: std::array::from_fn(|_| std::array::from_fn(|_| MBarrier::new(1))),
            empty: std::array::from_fn(|_| std::array::from_fn(|_| MBarrier::new(2))),
            turn: Default::default(),
            holds: [[None; STAGES]; 2],
            readers: [[0; STAGES]; 2],
            in_flight: Vec::new(),
        }
    }

    /// Tries the op of `actor` (0 producer, 1 and 2 consumers); false if it must wait.
    fn step(&mut self, actor: usize, op: Op) -> bool {
        match op {
            Op::WaitEmpty(t, s, p) => self.empty[ti(t)][s].try_wait(p),
            Op::Copy(t, j) => {
                let s = stage(j);
                assert_eq!(self.readers[ti(t)][s], 0, "{t:?} block {j} copied over stage {s} while it is read");
                assert!(
                    !self.in_flight.iter().any(|&(u, k)| u == t && stage(k) == s),
                    "{t:?} block {j}: stage {s} already has a copy in flight"
                );
                self.holds[ti(t)][s] = None;
                self.full[ti(t)][s].arrive(TILE_BYTES);
                self.in_flight.push((t, j));
                true
            }
            Op::WaitFull(t, s, p) => self.full[ti(t)][s].try_wait(p),
            Op::SyncTurn => std::mem::take(&mut self.turn[actor - 1].handed),
            Op::HandOver => {
                let b = &mut self.turn[2 - actor];
                assert!(!b.handed, "turn barrier {} arrived at twice before its wait", 2 - actor);
                b.handed = true;
                true
            }
            Op::Read(t, j) => {
                let s = stage(j);
                assert_eq!(self.holds[ti(t)][s], Some(j), "consumer {actor} reads {t:?} block {j} before it landed");
                self.readers[ti(t)][s] += 1;
                true
            }
            Op::Release(t, j) | Op::Done(t, j) => {
                let s = stage(j);
                self.readers[ti(t)][s] -= 1;
                if matches!(op, Op::Release(..)) {
                    self.empty[ti(t)][s].arrive(0);
                }
                true
            }
        }
    }

    /// A copy in flight lands: the stage holds its block, the full barrier gets its bytes.
    fn land(&mut self, i: usize) {
        let (t, j) = self.in_flight.remove(i);
        self.holds[ti(t)][stage(j)] = Some(j);
        self.full[ti(t)][stage(j)].complete_tx(TILE_BYTES);
    }
}

/// One random interleaving of the kernel's programs; panics on a violation or a deadlock.
fn run(n_blocks: usize, seed: u64) {
    let programs = [producer_ops(n_blocks), consumer_ops(false, n_blocks), consumer_ops(true, n_blocks)];
    run_programs(&programs, n_blocks, seed);
}

fn run_programs(programs: &[Vec<Op>; 3], n_blocks: usize, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut pc = [0usize; 3];
    let mut w = World::new();
    loop {
        // Candidates: each unfinished actor's next op, and each copy in flight.
        let actors: Vec<usize> = (0..3).filter(|&a| pc[a] < programs[a].len()).collect();
        if actors.is_empty() && w.in_flight.is_empty() {
            break;
        }
        let mut progressed = false;
        // Try candidates in a random order until one moves.
        let mut order: Vec<usize> = (0..actors.len() + w.in_flight.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        for c in order {
            if c >= actors.len() {
                w.land(c - actors.len());
                progressed = true;
                break;
            }
            let a = actors[c];
            if w.step(a, programs[a][pc[a]]) {
                pc[a] += 1;
                progressed = true;
                break;
            }
        }
        assert!(
            progressed,
            "deadlock at n_blocks {n_blocks} seed {seed}: next ops {:?}",
            (0..3).map(|a| programs[a].get(pc[a])).collect::<Vec<_>>()
        );
    }
    for (i, b) in w.turn.iter().enumerate() {
        assert!(!b.handed, "n_blocks {n_blocks}: turn barrier {i} ends with an arrival nobody waited for");
    }
    for t in 0..2 {
        for s in 0..STAGES {
            assert_eq!(w.full[t][s].arrived, 0);
            assert_eq!(w.readers[t][s], 0);
        }
    }
}

#[test]
fn every_interleaving_finishes_without_overwriting_or_early_reads() {
    for n_blocks in 0..10 {
        for seed in 0..300 {
            run(n_blocks, seed * 31 + n_blocks as u64);
        }
    }
}

/// The model catches what it is for: a producer that skips the wait for a released stage
/// overwrites a block still read (or deadlocks).
#[test]
fn the_model_catches_a_missing_empty_wait() {
    let broken = std::panic::catch_unwind(|| {
        for seed in 0..300 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let programs = [
                producer_ops(5).into_iter().filter(|op| !matches!(op, Op::WaitEmpty(..))).collect::<Vec<_>>(),
                consumer_ops(false, 5),
                consumer_ops(true, 5),
            ];
            let mut pc = [0usize; 3];
            let mut w = World::new();
            for _ in 0..10_000 {
                let a = rng.random_range(0..4);
                if a == 3 {
                    if !w.in_flight.is_empty() {
                        let i = rng.random_range(0..w.in_flight.len());
                        w.land(i);
                    }
                } else if pc[a] < programs[a].len() && w.step(a, programs[a][pc[a]]) {
                    pc[a] += 1;
                }
            }
        }
    });
    assert!(broken.is_err(), "a producer that never waits for released stages went unnoticed");
}

/// ... and a second consumer that hands the turn over after its last issue too (one arrival
/// nobody waits for).
#[test]
fn the_model_catches_an_unmatched_hand_over() {
    let broken = std::panic::catch_unwind(|| {
        let mut second = consumer_ops(true, 3);
        let last_read = second.iter().rposition(|op| matches!(op, Op::Read(Tensor::V, 1))).unwrap();
        second.insert(last_read + 1, Op::HandOver);
        run_programs(&[producer_ops(3), consumer_ops(false, 3), second], 3, 1);
    });
    assert!(broken.is_err(), "an extra hand-over went unnoticed");
}

/// The query tiles (`tile_first_row`): every row of the sequence in exactly one tile, whatever
/// its length; causal tiles run last tile first, the plain ones ending exactly at the last row,
/// the dropout ones starting on a multiple of 16 (the Philox calls are per aligned 16-row tile);
/// and each tile's key range (`tile_key_end`) holds every key its rows see, and no key past the
/// sequence.
#[test]
fn query_tiles_cover_every_row_once_and_their_keys() {
    const BM: usize = 128;
    for n_q in (1..=700usize).chain([1025, 4096, 4097]) {
        for causal in [false, true] {
            for dropout in [false, true] {
                let tiles = n_q.div_ceil(BM);
                let mut seen = vec![0u8; n_q];
                for cta in 0..tiles {
                    let row0 = tile_first_row::<BM>(cta, n_q, causal, dropout) as isize as i64;
                    let rows = (row0.max(0)..(row0 + BM as i64).min(n_q as i64)).map(|r| r as usize);
                    for r in rows.clone() {
                        seen[r] += 1;
                    }
                    let ctx = format!("n_q {n_q}, causal {causal}, dropout {dropout}, cta {cta}, row0 {row0}");
                    if dropout {
                        assert_eq!(row0.rem_euclid(16), 0, "{ctx}");
                    }
                    if causal && cta == 0 {
                        let end = row0 + BM as i64;
                        assert!(end >= n_q as i64 && end < n_q as i64 + if dropout { 16 } else { 1 }, "{ctx}");
                    }
                    for n_k in [1, 17, n_q, n_q + 100, (n_q / 2).max(1)] {
                        let end = tile_key_end::<BM>(row0 as usize, n_q, n_k, causal);
                        // Row r sees keys 0 ..= r + n_k - n_q (causal), all otherwise.
                        let needed = rows
                            .clone()
                            .map(|r| {
                                if causal {
                                    (r as i64 + 1 + n_k as i64 - n_q as i64).clamp(0, n_k as i64)
                                } else {
                                    n_k as i64
                                }
                            })
                            .max()
                            .unwrap_or(0);
                        assert!(end as i64 >= needed && end <= n_k, "{ctx}, n_k {n_k}: key end {end}, needed {needed}");
                    }
                }
                assert!(seen.iter().all(|&c| c == 1), "n_q {n_q}, causal {causal}, dropout {dropout}: {seen:?}");
            }
        }
    }
}
