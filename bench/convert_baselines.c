/*
 * Conversion-only baselines for Peep's bench script.
 *
 * Times BGRA (bytes B,G,R,A in memory = libyuv "ARGB") -> I420 at 1920x1080 and
 * 3840x2160, single-threaded, with:
 *   - libyuv ARGBToI420  (BT.601 limited; Debian's libyuv has no BT.709 "H420"
 *                         or *Matrix variant for RGB->YUV, see PEERS.md)
 *   - libyuv ARGBToJ420  (BT.601 full range; for reference only)
 *   - libyuv ARGBToNV12  (BT.601 limited, NV12 output; for reference only)
 *   - swscale BGRA->YUV420P, SWS_FAST_BILINEAR and SWS_BILINEAR, BT.709 limited
 *     (sws_setColorspaceDetails), threads=1
 *
 * Output, one line per (impl, size), key=value, e.g.
 *   convert impl=libyuv-argb2i420 size=1920x1080 matrix=bt601-limited iters=200
 *           median_ms=0.231 p95_ms=0.250 min_ms=0.220 mean_ms=0.235
 * plus one "check" line per impl with the Y/U/V of solid red/green/blue, so the
 * matrix actually used can be verified (BT.709 limited: red Y=63, green Y=173,
 * blue Y=32; BT.601 limited: 82/144/41; BT.601 full: 77/149/29).
 *
 * Usage: convert_baselines [-n1080 N] [-n4k N] [-w WARMUP] [-only SUBSTRING]
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libyuv.h>
#include <libavutil/avutil.h>
#include <libavutil/opt.h>
#include <libavutil/pixfmt.h>
#include <libswscale/swscale.h>

typedef struct {
    int w, h;
    int src_stride;
    uint8_t *src;          /* BGRA */
    uint8_t *y, *u, *v;    /* I420 planes (u also used as interleaved UV for NV12) */
    int y_stride, uv_stride;
} Frame;

typedef struct Impl Impl;
struct Impl {
    const char *name;
    const char *matrix;
    int sws_flags;         /* 0 = libyuv */
    int (*yuv_fn)(const Impl *, Frame *);
    struct SwsContext *sws; /* per-size context, created lazily */
    int sws_w, sws_h;
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *xalloc(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n) != 0 || !p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(1);
    }
    memset(p, 0, n);
    return p;
}

static int align_up(int x, int a) { return (x + a - 1) / a * a; }

static Frame frame_new(int w, int h) {
    Frame f;
    f.w = w;
    f.h = h;
    f.src_stride = w * 4;
    f.y_stride = align_up(w, 64);
    f.uv_stride = align_up((w + 1) / 2, 64);
    f.src = xalloc((size_t)f.src_stride * h);
    f.y = xalloc((size_t)f.y_stride * h);
    /* u is large enough for NV12's interleaved UV plane as well */
    f.u = xalloc((size_t)f.uv_stride * 2 * ((h + 1) / 2));
    f.v = xalloc((size_t)f.uv_stride * ((h + 1) / 2));
    return f;
}

static void frame_free(Frame *f) {
    free(f->src); free(f->y); free(f->u); free(f->v);
}

/* Varied desktop-like content: gradients, a text-like noise band, flat areas and
 * sharp edges, alpha 255. Deterministic. */
static void fill_content(Frame *f) {
    uint32_t s = 0x12345678u;
    for (int y = 0; y < f->h; y++) {
        uint8_t *row = f->src + (size_t)y * f->src_stride;
        for (int x = 0; x < f->w; x++) {
            uint8_t b, g, r;
            int region = ((x * 4 / f->w) + (y * 3 / f->h) * 4) % 5;
            s ^= s << 13; s ^= s >> 17; s ^= s << 5;  /* xorshift32 */
            switch (region) {
            case 0: /* diagonal gradient */
                r = (uint8_t)(x + y); g = (uint8_t)(x * 2); b = (uint8_t)(y * 3);
                break;
            case 1: /* text-like: mostly white, dark glyph-ish dots */
                if ((s & 7) < 2 && ((y / 2) % 9) < 7) { r = g = b = (uint8_t)(s >> 24 & 0x3f); }
                else { r = g = b = 0xf4; }
                break;
            case 2: /* full noise (worst case for nothing, but exercises every path) */
                r = (uint8_t)(s >> 8); g = (uint8_t)(s >> 16); b = (uint8_t)(s >> 24);
                break;
            case 3: /* flat UI colour with 1-px borders every 40 px */
                if (x % 40 == 0 || y % 40 == 0) { r = 0x20; g = 0x20; b = 0x20; }
                else { r = 0x2b; g = 0x57; b = 0x9a; }
                break;
            default: /* colour bars */
                r = (x / 64) & 1 ? 255 : 0; g = (x / 64) & 2 ? 255 : 0; b = (x / 64) & 4 ? 255 : 0;
                break;
            }
            row[4 * x + 0] = b;
            row[4 * x + 1] = g;
            row[4 * x + 2] = r;
            row[4 * x + 3] = 255;
        }
    }
}

static int run_libyuv_i420(const Impl *im, Frame *f) {
    (void)im;
    return ARGBToI420(f->src, f->src_stride, f->y, f->y_stride, f->u, f->uv_stride,
                      f->v, f->uv_stride, f->w, f->h);
}

static int run_libyuv_j420(const Impl *im, Frame *f) {
    (void)im;
    return ARGBToJ420(f->src, f->src_stride, f->y, f->y_stride, f->u, f->uv_stride,
                      f->v, f->uv_stride, f->w, f->h);
}

static int run_libyuv_nv12(const Impl *im, Frame *f) {
    (void)im;
    /* interleaved UV goes into f->u with stride 2*uv_stride */
    return ARGBToNV12(f->src, f->src_stride, f->y, f->y_stride, f->u, f->uv_stride * 2,
                      f->w, f->h);
}

static struct SwsContext *make_sws(int w, int h, int flags) {
    struct SwsContext *c = sws_alloc_context();
    if (!c) return NULL;
    av_opt_set_int(c, "srcw", w, 0);
    av_opt_set_int(c, "srch", h, 0);
    av_opt_set_int(c, "src_format", AV_PIX_FMT_BGRA, 0);
    av_opt_set_int(c, "dstw", w, 0);
    av_opt_set_int(c, "dsth", h, 0);
    av_opt_set_int(c, "dst_format", AV_PIX_FMT_YUV420P, 0);
    av_opt_set_int(c, "sws_flags", flags, 0);
    av_opt_set_int(c, "threads", 1, 0); /* single-threaded (also the default) */
    if (sws_init_context(c, NULL, NULL) < 0) { sws_freeContext(c); return NULL; }
    /* BT.709, RGB source full range, YUV destination limited range. For RGB->YUV
     * swscale takes the coefficients from the destination table. */
    const int *coef = sws_getCoefficients(SWS_CS_ITU709);
    if (sws_setColorspaceDetails(c, coef, 1, coef, 0, 0, 1 << 16, 1 << 16) < 0) {
        fprintf(stderr, "sws_setColorspaceDetails failed\n");
        sws_freeContext(c);
        return NULL;
    }
    return c;
}

static int run_sws(const Impl *cim, Frame *f) {
    Impl *im = (Impl *)cim;
    if (!im->sws || im->sws_w != f->w || im->sws_h != f->h) {
        if (im->sws) sws_freeContext(im->sws);
        im->sws = make_sws(f->w, f->h, im->sws_flags);
        im->sws_w = f->w; im->sws_h = f->h;
        if (!im->sws) return -1;
    }
    const uint8_t *src[4] = { f->src, NULL, NULL, NULL };
    int src_stride[4] = { f->src_stride, 0, 0, 0 };
    uint8_t *dst[4] = { f->y, f->u, f->v, NULL };
    int dst_stride[4] = { f->y_stride, f->uv_stride, f->uv_stride, 0 };
    int out_h = sws_scale(im->sws, src, src_stride, 0, f->h, dst, dst_stride);
    return out_h == f->h ? 0 : -1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Convert solid red, green and blue 64x64 frames and print the resulting Y/U/V. */
static void check_matrix(Impl *im) {
    static const uint8_t cols[3][3] = { {0, 0, 255}, {0, 255, 0}, {255, 0, 0} }; /* B,G,R */
    static const char *names[3] = { "red", "green", "blue" };
    int is_nv12 = strstr(im->name, "nv12") != NULL;
    printf("check impl=%s matrix=%s", im->name, im->matrix);
    for (int c = 0; c < 3; c++) {
        Frame f = frame_new(64, 64);
        for (int i = 0; i < 64 * 64; i++) {
            f.src[4 * i + 0] = cols[c][0]; f.src[4 * i + 1] = cols[c][1];
            f.src[4 * i + 2] = cols[c][2]; f.src[4 * i + 3] = 255;
        }
        if (im->yuv_fn(im, &f) != 0) { printf(" %s=error", names[c]); frame_free(&f); continue; }
        int Y = f.y[32 * f.y_stride + 32];
        int U = is_nv12 ? f.u[16 * f.uv_stride * 2 + 32] : f.u[16 * f.uv_stride + 16];
        int V = is_nv12 ? f.u[16 * f.uv_stride * 2 + 33] : f.v[16 * f.uv_stride + 16];
        printf(" %s_yuv=%d,%d,%d", names[c], Y, U, V);
        frame_free(&f);
    }
    printf("\n");
    if (im->sws) { sws_freeContext(im->sws); im->sws = NULL; }
}

static void bench(Impl *im, int w, int h, int warmup, int iters) {
    Frame f = frame_new(w, h);
    fill_content(&f);
    for (int i = 0; i < warmup; i++) {
        if (im->yuv_fn(im, &f) != 0) {
            printf("convert impl=%s size=%dx%d error=1\n", im->name, w, h);
            frame_free(&f);
            return;
        }
    }
    double *t = malloc(sizeof(double) * iters);
    double sum = 0;
    for (int i = 0; i < iters; i++) {
        double t0 = now_ms();
        im->yuv_fn(im, &f);
        t[i] = now_ms() - t0;
        sum += t[i];
    }
    qsort(t, iters, sizeof(double), cmp_double);
    double median = iters % 2 ? t[iters / 2] : 0.5 * (t[iters / 2 - 1] + t[iters / 2]);
    int p95i = (int)(0.95 * iters + 0.999999) - 1;
    if (p95i < 0) p95i = 0;
    if (p95i >= iters) p95i = iters - 1;
    /* consume the output so nothing can be elided */
    unsigned acc = 0;
    for (int i = 0; i < w; i += 97) acc += f.y[(h / 2) * f.y_stride + i];
    printf("convert impl=%s size=%dx%d matrix=%s iters=%d median_ms=%.3f p95_ms=%.3f "
           "min_ms=%.3f mean_ms=%.3f ysum=%u\n",
           im->name, w, h, im->matrix, iters, median, t[p95i], t[0], sum / iters, acc);
    fflush(stdout);
    free(t);
    frame_free(&f);
    if (im->sws) { sws_freeContext(im->sws); im->sws = NULL; }
}

int main(int argc, char **argv) {
    int n1080 = 200, n4k = 50, warmup = 10;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n1080") && i + 1 < argc) n1080 = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-n4k") && i + 1 < argc) n4k = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-w") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-only") && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [-n1080 N] [-n4k N] [-w WARMUP] [-only SUBSTRING]\n", argv[0]);
            return 2;
        }
    }
    if (n1080 < 1) n1080 = 1;
    if (n4k < 1) n4k = 1;

    Impl impls[] = {
        { "libyuv-argb2i420", "bt601-limited", 0, run_libyuv_i420, NULL, 0, 0 },
        { "libyuv-argb2j420", "bt601-full", 0, run_libyuv_j420, NULL, 0, 0 },
        { "libyuv-argb2nv12", "bt601-limited", 0, run_libyuv_nv12, NULL, 0, 0 },
        { "swscale-fast-bilinear", "bt709-limited", SWS_FAST_BILINEAR, run_sws, NULL, 0, 0 },
        { "swscale-bilinear", "bt709-limited", SWS_BILINEAR, run_sws, NULL, 0, 0 },
    };
    int n = sizeof(impls) / sizeof(impls[0]);

    FILE *la = fopen("/proc/loadavg", "r");
    char load[128] = "?";
    if (la) { if (fgets(load, sizeof load, la)) load[strcspn(load, " ")] = 0; fclose(la); }
    printf("# libyuv=%d swscale=%s avutil=%s cpu_flags=0x%x loadavg1=%s\n", LIBYUV_VERSION,
           AV_STRINGIFY(LIBSWSCALE_VERSION), AV_STRINGIFY(LIBAVUTIL_VERSION),
           TestCpuFlag(0xffffffff), load);

    for (int i = 0; i < n; i++) {
        if (only && !strstr(impls[i].name, only)) continue;
        check_matrix(&impls[i]);
    }
    const int sizes[2][3] = { {1920, 1080, 0}, {3840, 2160, 1} };
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < n; i++) {
            if (only && !strstr(impls[i].name, only)) continue;
            int iters = sizes[s][2] ? n4k : n1080;
            int wu = sizes[s][2] ? (warmup + 1) / 2 : warmup;
            bench(&impls[i], sizes[s][0], sizes[s][1], wu, iters);
        }
    }
    return 0;
}
