//! The dimensions of one attention problem, shared by the operations, the CPU reference and the
//! benchmarks: q is `[batch, seqlen_q, heads, head_dim]`, k and v `[batch, seqlen_k, heads_kv,
//! head_dim]`, lse `[batch, heads, seqlen_q]`.

/// Problem dimensions. `heads` must be a multiple of `heads_kv` (MQA/GQA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub batch: usize,
    pub seqlen_q: usize,
    pub seqlen_k: usize,
    pub heads: usize,
    pub heads_kv: usize,
    pub head_dim: usize,
}

impl Shape {
    /// Number of elements of `q`, `o`, `d_o`, `dq`.
    pub fn q_len(&self) -> usize {
        self.batch * self.seqlen_q * self.heads * self.head_dim
    }

    /// Number of elements of `k`, `v`, `dk`, `dv`.
    pub fn kv_len(&self) -> usize {
        self.batch * self.seqlen_k * self.heads_kv * self.head_dim
    }

    /// Number of elements of `lse`.
    pub fn lse_len(&self) -> usize {
        self.batch * self.heads * self.seqlen_q
    }

    /// Number of elements of a dropout keep-mask: `batch*heads*seqlen_q*seqlen_k`.
    pub fn mask_len(&self) -> usize {
        self.batch * self.heads * self.seqlen_q * self.seqlen_k
    }

    /// The K/V head read by query head `h` (GQA / MQA grouping).
    pub fn kv_head(&self, h: usize) -> usize {
        // `max(1)` keeps a malformed `heads < heads_kv` from dividing by zero;
        // for valid shapes the group size is always >= 1 anyway.
        h / (self.heads / self.heads_kv).max(1)
    }
}
