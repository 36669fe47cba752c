// Fused causal attention over a packed batch of sequences, with GQA and an online softmax
// (flash-attention style: scores never reach device memory).
//
// The host cuts every sequence's query rows into tiles of ATT_BQ rows; `tiles` holds, per tile,
// {first packed query row, rows in the tile, key position of its first row, first packed key row}.
// Query row r of a tile sits at key position pos0 + r and sees keys 0..=pos0 + r of its sequence
// (causal over past ++ new), or with window > 0 only the last `window` of them. Grid: (tiles, query heads, key splits). Block: ATT_THREADS threads,
// each warp owning ATT_BQ / 4 query rows; keys stream through shared memory ATT_BK at a time.
// With one split the block writes the normalised output; with several (long keys, few blocks,
// e.g. decoding) each split writes its unnormalised partial sum and its running max / sum, and
// attention_combine merges them.

#define ATT_BQ 16
#define ATT_BK 32
#define ATT_THREADS 128
#define ATT_ROWS_PER_WARP (ATT_BQ / (ATT_THREADS / 32))
#define ATT_MAX_D 8  // head_dim <= 32 * ATT_MAX_D = 256

extern "C" __global__ void attention(float* out, float* part_acc, float* part_ml, const float* q,
                                     const float* k, const float* v, const int* tiles, int q_rows,
                                     int num_heads, int num_kv_heads, int head_dim, int split_len,
                                     int splits, float scale, int window) {
    extern __shared__ float smem[];
    const int hd = head_dim;
    float* Qs = smem;                    // [ATT_BQ][hd], pre-scaled
    float* Ks = Qs + ATT_BQ * hd;        // [ATT_BK][hd + 1] (padded: lanes read distinct banks)
    float* Vs = Ks + ATT_BK * (hd + 1);  // [ATT_BK][hd]

    const int tile = blockIdx.x, h = blockIdx.y, split = blockIdx.z;
    const int q_row0 = tiles[tile * 4 + 0];
    const int n_rows = tiles[tile * 4 + 1];
    const int pos0 = tiles[tile * 4 + 2];
    const int kv_start = tiles[tile * 4 + 3];
    const int kvh = h / (num_heads / num_kv_heads);
    const long long q_cols = (long long)num_heads * hd;
    const long long kv_cols = (long long)num_kv_heads * hd;
    const int key_begin = split * split_len;
    const int key_end = min(key_begin + split_len, pos0 + n_rows);
    // Keys before the first row's window are seen by no row of the tile.
    const int key_lo = window > 0 ? max(key_begin, pos0 + 1 - window) : key_begin;

    for (int i = threadIdx.x; i < ATT_BQ * hd; i += blockDim.x) {
        int r = i / hd, d = i - r * hd;
        Qs[i] = r < n_rows ? q[(long long)(q_row0 + r) * q_cols + (long long)h * hd + d] * scale : 0.0f;
    }

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float m_i[ATT_ROWS_PER_WARP], l_i[ATT_ROWS_PER_WARP], acc[ATT_ROWS_PER_WARP][ATT_MAX_D];
#pragma unroll
    for (int rr = 0; rr < ATT_ROWS_PER_WARP; ++rr) {
        m_i[rr] = NEG_INF;
        l_i[rr] = 0.0f;
#pragma unroll
        for (int j = 0; j < ATT_MAX_D; ++j) acc[rr][j] = 0.0f;
    }

    for (int kb = key_lo; kb < key_end; kb += ATT_BK) {
        __syncthreads();  // the previous tile's readers are done (and Qs is written, first time)
        for (int i = threadIdx.x; i < ATT_BK * hd; i += blockDim.x) {
            int j = i / hd, d = i - j * hd;
            int key = kb + j;
            float kk = 0.0f, vv = 0.0f;
            if (key < key_end) {
                long long off = (long long)(kv_start + key) * kv_cols + (long long)kvh * hd + d;
                kk = k[off];
                vv = v[off];
            }
            Ks[j * (hd + 1) + d] = kk;
            Vs[j * hd + d] = vv;
        }
        __syncthreads();
        const int key = kb + lane;
#pragma unroll
        for (int rr = 0; rr < ATT_ROWS_PER_WARP; ++rr) {
            const int r = warp * ATT_ROWS_PER_WARP + rr;
            if (r >= n_rows) continue;  // warp-uniform
            const bool valid = key < key_end && key <= pos0 + r && (window <= 0 || key > pos0 + r - window);
            float s = NEG_INF;
            if (valid) {
                const float* qr = Qs + r * hd;
                const float* kr = Ks + lane * (hd + 1);
                float dot = 0.0f;
                for (int d = 0; d < hd; ++d) dot = fmaf(qr[d], kr[d], dot);
                s = dot;
            }
            const float tile_max = warp_max(s);
            if (tile_max == NEG_INF) continue;  // warp-uniform: no visible key in this tile
            const float new_m = fmaxf(m_i[rr], tile_max);
            const float p = valid ? expf(s - new_m) : 0.0f;
            const float corr = expf(m_i[rr] - new_m);  // 0 while nothing was seen (m = -inf)
            l_i[rr] = l_i[rr] * corr + warp_sum(p);
            m_i[rr] = new_m;
#pragma unroll
            for (int j = 0; j < ATT_MAX_D; ++j) acc[rr][j] *= corr;
            for (int j = 0; j < ATT_BK; ++j) {
                const float pj = __shfl_sync(0xffffffffu, p, j);
                if (pj == 0.0f) continue;  // warp-uniform (a broadcast value)
                const float* vr = Vs + j * hd;
#pragma unroll
                for (int jd = 0; jd < ATT_MAX_D; ++jd) {
                    int d = lane + 32 * jd;
                    if (d < hd) acc[rr][jd] = fmaf(pj, vr[d], acc[rr][jd]);
                }
            }
        }
    }

#pragma unroll
    for (int rr = 0; rr < ATT_ROWS_PER_WARP; ++rr) {
        const int r = warp * ATT_ROWS_PER_WARP + rr;
        if (r >= n_rows) continue;
        const long long qrow = q_row0 + r;
        if (splits == 1) {
            const float inv = 1.0f / l_i[rr];
#pragma unroll
            for (int jd = 0; jd < ATT_MAX_D; ++jd) {
                int d = lane + 32 * jd;
                if (d < hd) out[qrow * q_cols + (long long)h * hd + d] = acc[rr][jd] * inv;
            }
        } else {
            const long long slot = ((long long)split * q_rows + qrow) * num_heads + h;
#pragma unroll
            for (int jd = 0; jd < ATT_MAX_D; ++jd) {
                int d = lane + 32 * jd;
                if (d < hd) part_acc[slot * hd + d] = acc[rr][jd];
            }
            if (lane == 0) {
                part_ml[slot * 2 + 0] = m_i[rr];
                part_ml[slot * 2 + 1] = l_i[rr];
            }
        }
    }
}

// Merges the splits' partial results: one block per (query row, head), one thread per element.
extern "C" __global__ void attention_combine(float* out, const float* part_acc, const float* part_ml,
                                             int q_rows, int num_heads, int head_dim, int splits) {
    const long long rh = blockIdx.x;  // qrow * num_heads + h
    const long long stride = (long long)q_rows * num_heads;
    float m = NEG_INF;
    for (int s = 0; s < splits; ++s) m = fmaxf(m, part_ml[(s * stride + rh) * 2]);
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float total = 0.0f, acc = 0.0f;
        for (int s = 0; s < splits; ++s) {
            const float ms = part_ml[(s * stride + rh) * 2];
            if (ms == NEG_INF) continue;
            const float f = expf(ms - m);
            total = fmaf(part_ml[(s * stride + rh) * 2 + 1], f, total);
            acc = fmaf(part_acc[(s * stride + rh) * head_dim + d], f, acc);
        }
        out[rh * head_dim + d] = acc / total;
    }
}
