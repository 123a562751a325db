/* Event-driven 3x3 convolution of binary spike maps (a probe, not part of svebi_jax).
 *
 * y[n, oy, ox, :] = sum_{i, j} sum_{c : x[n, oy+i-1, ox+j-1, c] = 1} w[i, j, c, :]
 * (stride 1, zero padding 1, NHWC / HWIO, float32). Only input spikes are visited. The output
 * is cut into TS x TS tiles (kept in cache); for each tile the spikes of its input halo are
 * bucketed by channel, and every channel's 9 kernel rows are then added, once per spike and
 * tap, into the tile: the work is proportional to the number of spikes, and each kernel row
 * is read once per tile while it is hot, not once per spike from memory.
 *
 * Build: cc -O3 -march=native -shared -fPIC event_conv.c -o libevent_conv.so
 */
#include <stdint.h>
#include <string.h>

#define TS 8

/* x: [N, H, W, C] (0/1), w: [3, 3, C, O], y: [N, H, W, O].
 * scratch: ints, at least C + (TS + 2)^2 * C + C + 1. tile: floats, TS * TS * O. */
void event_conv3x3(const float *x, const float *w, float *y, int32_t *scratch, float *tile,
                   int n_img, int h, int wd, int c_in, int c_out) {
  const int halo = TS + 2;
  int32_t *count = scratch;                    /* [C] spikes per channel in the halo */
  int32_t *start = count + c_in;               /* [C + 1] bucket offsets */
  int32_t *bucket = start + c_in + 1;          /* [(TS+2)^2 * C] halo pixel ids by channel */
  for (int n = 0; n < n_img; ++n)
    for (int ty = 0; ty < h; ty += TS)
      for (int tx = 0; tx < wd; tx += TS) {
        const int th = (h - ty < TS) ? h - ty : TS, tw = (wd - tx < TS) ? wd - tx : TS;
        /* Counting sort of the halo's spikes by channel: pass 0 counts them, pass 1 stores
         * halo pixel ids a * halo + b into each channel's bucket. */
        for (int pass = 0; pass < 2; ++pass) {
          memset(count, 0, sizeof(int32_t) * c_in);
          for (int a = 0; a < th + 2; ++a) {
            const int iy = ty + a - 1;
            if (iy < 0 || iy >= h) continue;
            for (int b = 0; b < tw + 2; ++b) {
              const int ix = tx + b - 1;
              if (ix < 0 || ix >= wd) continue;
              const float *xp = x + (((long)n * h + iy) * wd + ix) * c_in;
              for (int c = 0; c < c_in; ++c)
                if (xp[c] != 0.0f) {
                  if (pass) bucket[start[c] + count[c]] = a * halo + b;
                  ++count[c];
                }
            }
          }
          if (!pass) {
            start[0] = 0;
            for (int c = 0; c < c_in; ++c) start[c + 1] = start[c] + count[c];
          }
        }
        memset(tile, 0, sizeof(float) * TS * TS * c_out);
        for (int c = 0; c < c_in; ++c)
          for (int32_t k = start[c]; k < start[c + 1]; ++k) {
            const int a = bucket[k] / halo, b = bucket[k] % halo;
            for (int i = 0; i < 3; ++i) {      /* output row a - i of the tile (halo coords) */
              const int r = a - i;
              if (r < 0 || r >= th) continue;
              for (int j = 0; j < 3; ++j) {
                const int s = b - j;
                if (s < 0 || s >= tw) continue;
                float *tp = tile + (r * TS + s) * c_out;
                const float *wr = w + ((long)(i * 3 + j) * c_in + c) * c_out;
                for (int o = 0; o < c_out; ++o) tp[o] += wr[o];
              }
            }
          }
        for (int r = 0; r < th; ++r)
          memcpy(y + (((long)n * h + ty + r) * wd + tx) * c_out, tile + r * TS * c_out,
                 sizeof(float) * tw * c_out);
      }
}
