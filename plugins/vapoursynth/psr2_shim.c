/*
 * psr2video VapourSynth shim: registers the `psr2` namespace with `Upscale`.
 *
 * The model runs in Python (psr2video.Upscaler). This library only does the VapourSynth plumbing:
 * it validates nothing about the model itself, asks Python (`psr2video.vs.filter.create`) for an instance
 * object, then creates a native filter whose getframe hands plane buffers (memoryviews) to
 * `instance.process(src_planes, dst_planes, width, height, src_stride, dst_stride)`.
 *
 * It does not link libpython: every CPython function is looked up at call time with
 * dlsym(RTLD_DEFAULT, ...). They exist whenever the core lives in a Python process (vspipe and
 * other VSScript hosts embed Python; `import vapoursynth` is Python). In a Python-less host the
 * plugin still loads and Upscale returns a clear error.
 *
 * Build (vs_install does this): gcc -O2 -shared -fPIC -I<vapoursynth include> psr2_shim.c -o libpsr2video.so -ldl
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "VapourSynth4.h"

#define PSR2_PLUGIN_VERSION 3

/* ---- the few CPython ABI pieces we need (no Python.h) ---------------------------------------- */
typedef struct _object PyObject;
typedef ssize_t Py_ssize_t;
typedef int PyGILState_STATE;
#define PYBUF_READ 0x100
#define PYBUF_WRITE 0x200

static struct {
    int loaded;
    int (*Py_IsInitialized)(void);
    int (*Py_IsFinalizing)(void); /* optional: Py_IsFinalizing (3.13+) or _Py_IsFinalizing */
    PyGILState_STATE (*PyGILState_Ensure)(void);
    void (*PyGILState_Release)(PyGILState_STATE);
    PyObject *(*PyImport_ImportModule)(const char *);
    PyObject *(*PyObject_GetAttrString)(PyObject *, const char *);
    PyObject *(*PyObject_Call)(PyObject *, PyObject *, PyObject *);
    PyObject *(*PyObject_Str)(PyObject *);
    PyObject *(*PyTuple_New)(Py_ssize_t);
    int (*PyTuple_SetItem)(PyObject *, Py_ssize_t, PyObject *);
    PyObject *(*PyDict_New)(void);
    int (*PyDict_SetItemString)(PyObject *, const char *, PyObject *);
    PyObject *(*PyLong_FromLongLong)(long long);
    long long (*PyLong_AsLongLong)(PyObject *);
    PyObject *(*PyUnicode_FromStringAndSize)(const char *, Py_ssize_t);
    PyObject *(*PyUnicode_AsUTF8String)(PyObject *);
    char *(*PyBytes_AsString)(PyObject *);
    PyObject *(*PyMemoryView_FromMemory)(char *, Py_ssize_t, int);
    PyObject *(*PyErr_Occurred)(void);
    void (*PyErr_Fetch)(PyObject **, PyObject **, PyObject **);
    void (*PyErr_NormalizeException)(PyObject **, PyObject **, PyObject **);
    void (*PyErr_Clear)(void);
    void (*Py_IncRef)(PyObject *);
    void (*Py_DecRef)(PyObject *);
} py;

static int load_python(void) {
    if (py.loaded)
        return py.loaded > 0;
#define SYM(name) if (!(*(void **)&py.name = dlsym(RTLD_DEFAULT, #name))) { py.loaded = -1; return 0; }
    SYM(Py_IsInitialized) SYM(PyGILState_Ensure) SYM(PyGILState_Release) SYM(PyImport_ImportModule)
    SYM(PyObject_GetAttrString) SYM(PyObject_Call) SYM(PyObject_Str) SYM(PyTuple_New) SYM(PyTuple_SetItem)
    SYM(PyDict_New) SYM(PyDict_SetItemString) SYM(PyLong_FromLongLong) SYM(PyLong_AsLongLong)
    SYM(PyUnicode_FromStringAndSize) SYM(PyUnicode_AsUTF8String) SYM(PyBytes_AsString)
    SYM(PyMemoryView_FromMemory) SYM(PyErr_Occurred) SYM(PyErr_Fetch) SYM(PyErr_NormalizeException)
    SYM(PyErr_Clear) SYM(Py_IncRef) SYM(Py_DecRef)
#undef SYM
    *(void **)&py.Py_IsFinalizing = dlsym(RTLD_DEFAULT, "Py_IsFinalizing");
    if (!py.Py_IsFinalizing)
        *(void **)&py.Py_IsFinalizing = dlsym(RTLD_DEFAULT, "_Py_IsFinalizing");
    py.loaded = 1;
    return 1;
}

static int python_usable(void) {
    return load_python() && py.Py_IsInitialized() && !(py.Py_IsFinalizing && py.Py_IsFinalizing());
}

static void decref(PyObject *o) {
    if (o)
        py.Py_DecRef(o);
}

/* Turn the pending Python exception into "psr2.Upscale: <message>" (clears it). GIL held. */
static void take_error(char *buf, size_t size) {
    PyObject *type = NULL, *value = NULL, *tb = NULL, *s = NULL, *b = NULL;
    const char *msg = NULL;
    py.PyErr_Fetch(&type, &value, &tb);
    py.PyErr_NormalizeException(&type, &value, &tb);
    if (value && (s = py.PyObject_Str(value)) && (b = py.PyUnicode_AsUTF8String(s)))
        msg = py.PyBytes_AsString(b);
    if (!msg || !*msg)
        msg = "unknown error in the Python side (psr2video.vs.filter)";
    snprintf(buf, size, "psr2.Upscale: %s", msg);
    if (py.PyErr_Occurred())
        py.PyErr_Clear();
    decref(b); decref(s); decref(type); decref(value); decref(tb);
}

/* ---- the filter ----------------------------------------------------------------------------- */
typedef struct {
    VSNode *node;
    PyObject *process; /* bound method instance.process */
    int scale;
} UpscaleData;

static const VSFrame *VS_CC upscaleGetFrame(int n, int activationReason, void *instanceData, void **frameData,
                                            VSFrameContext *frameCtx, VSCore *core, const VSAPI *vsapi) {
    UpscaleData *d = (UpscaleData *)instanceData;
    (void)frameData;
    if (activationReason == arInitial) {
        vsapi->requestFrameFilter(n, d->node, frameCtx);
        return NULL;
    }
    if (activationReason != arAllFramesReady)
        return NULL;

    const VSFrame *src = vsapi->getFrameFilter(n, d->node, frameCtx);
    const VSVideoFormat *fmt = vsapi->getVideoFrameFormat(src);
    int w = vsapi->getFrameWidth(src, 0), h = vsapi->getFrameHeight(src, 0);
    int ow = w * d->scale, oh = h * d->scale;
    if (fmt->colorFamily != cfRGB || fmt->sampleType != stFloat || vsapi->getReadPtr(src, 0) == NULL) {
        vsapi->freeFrame(src);
        vsapi->setFilterError("psr2.Upscale: frame is not a CPU RGBS/RGBH frame", frameCtx);
        return NULL;
    }
    VSFrame *dst = vsapi->newVideoFrame(fmt, ow, oh, src, core); /* copies the frame properties */
    ptrdiff_t sstride = vsapi->getStride(src, 0), dstride = vsapi->getStride(dst, 0);
    char err[1024] = {0};

    if (!python_usable()) {
        snprintf(err, sizeof err, "psr2.Upscale: the Python interpreter is gone (process shutting down)");
    } else {
        PyGILState_STATE g = py.PyGILState_Ensure();
        PyObject *args = py.PyTuple_New(6), *sp = py.PyTuple_New(3), *dp = py.PyTuple_New(3), *res = NULL;
        for (int p = 0; p < 3; p++) {
            py.PyTuple_SetItem(sp, p, py.PyMemoryView_FromMemory((char *)vsapi->getReadPtr(src, p),
                                                                 (Py_ssize_t)(sstride * h), PYBUF_READ));
            py.PyTuple_SetItem(dp, p, py.PyMemoryView_FromMemory((char *)vsapi->getWritePtr(dst, p),
                                                                 (Py_ssize_t)(dstride * oh), PYBUF_WRITE));
        }
        py.PyTuple_SetItem(args, 0, sp);
        py.PyTuple_SetItem(args, 1, dp);
        py.PyTuple_SetItem(args, 2, py.PyLong_FromLongLong(w));
        py.PyTuple_SetItem(args, 3, py.PyLong_FromLongLong(h));
        py.PyTuple_SetItem(args, 4, py.PyLong_FromLongLong(sstride));
        py.PyTuple_SetItem(args, 5, py.PyLong_FromLongLong(dstride));
        if (!py.PyErr_Occurred())
            res = py.PyObject_Call(d->process, args, NULL);
        if (!res)
            take_error(err, sizeof err);
        decref(res);
        decref(args);
        py.PyGILState_Release(g);
    }
    vsapi->freeFrame(src);
    if (err[0]) {
        vsapi->freeFrame(dst);
        vsapi->setFilterError(err, frameCtx);
        return NULL;
    }
    return dst;
}

static void VS_CC upscaleFree(void *instanceData, VSCore *core, const VSAPI *vsapi) {
    UpscaleData *d = (UpscaleData *)instanceData;
    (void)core;
    vsapi->freeNode(d->node);
    if (d->process && python_usable()) { /* at interpreter shutdown the object is simply leaked */
        PyGILState_STATE g = py.PyGILState_Ensure();
        decref(d->process);
        py.PyGILState_Release(g);
    }
    free(d);
}

/* ---- argument passing ----------------------------------------------------------------------- */
static const char *const STR_ARGS[] = {"variant", "weights", "model", "backend", "precision", "device", NULL};
static const char *const INT_ARGS[] = {"scale", "tile", "overlap", "num_streams", "tta", NULL};

/* kwargs dict with only the arguments the caller gave (Python applies the defaults). GIL held. */
static PyObject *build_kwargs(const VSMap *in, const VSAPI *vsapi) {
    PyObject *kw = py.PyDict_New();
    int e;
    for (int i = 0; STR_ARGS[i]; i++) {
        const char *s = vsapi->mapGetData(in, STR_ARGS[i], 0, &e);
        if (!e) {
            PyObject *v = py.PyUnicode_FromStringAndSize(s, vsapi->mapGetDataSize(in, STR_ARGS[i], 0, &e));
            if (!v)
                goto fail;
            py.PyDict_SetItemString(kw, STR_ARGS[i], v);
            decref(v);
        }
    }
    for (int i = 0; INT_ARGS[i]; i++) {
        int64_t x = vsapi->mapGetInt(in, INT_ARGS[i], 0, &e);
        if (!e) {
            PyObject *v = py.PyLong_FromLongLong(x);
            py.PyDict_SetItemString(kw, INT_ARGS[i], v);
            decref(v);
        }
    }
    return kw;
fail:
    decref(kw);
    return NULL;
}

static void set_int(PyObject *dict, const char *key, long long v) {
    PyObject *o = py.PyLong_FromLongLong(v);
    py.PyDict_SetItemString(dict, key, o);
    decref(o);
}

static void VS_CC upscaleCreate(const VSMap *in, VSMap *out, void *userData, VSCore *core, const VSAPI *vsapi) {
    (void)userData;
    VSNode *node = vsapi->mapGetNode(in, "clip", 0, NULL);
    VSVideoInfo vi = *vsapi->getVideoInfo(node);
    char err[1024] = {0}, fname[32] = "unknown";

    if (!python_usable()) {
        vsapi->mapSetError(out, "psr2.Upscale: no Python interpreter in this process; the model runs in Python, "
                                "so use it from a .vpy script (vspipe) or after `import vapoursynth`");
        vsapi->freeNode(node);
        return;
    }
    if (vi.format.colorFamily != cfUndefined)
        vsapi->getVideoFormatName(&vi.format, fname);

    PyGILState_STATE g = py.PyGILState_Ensure();
    PyObject *mod = NULL, *fn = NULL, *kw = NULL, *info = NULL, *args = NULL, *inst = NULL, *proc = NULL,
             *sc = NULL, *ns = NULL;
    long long scale = 0, streams = 1;
    if (!(mod = py.PyImport_ImportModule("psr2video.vs.filter")) || !(fn = py.PyObject_GetAttrString(mod, "create")) ||
        !(kw = build_kwargs(in, vsapi)) || !(info = py.PyDict_New()))
        goto pyfail;
    {
        PyObject *name = py.PyUnicode_FromStringAndSize(fname, (Py_ssize_t)strlen(fname));
        py.PyDict_SetItemString(info, "format", name);
        decref(name);
    }
    set_int(info, "color_family", vi.format.colorFamily);
    set_int(info, "sample_type", vi.format.sampleType);
    set_int(info, "bits", vi.format.bitsPerSample);
    set_int(info, "width", vi.width);
    set_int(info, "height", vi.height);
    set_int(info, "num_frames", vi.numFrames);
    if (!(args = py.PyTuple_New(1)))
        goto pyfail;
    py.Py_IncRef(info);
    py.PyTuple_SetItem(args, 0, info);
    if (!(inst = py.PyObject_Call(fn, args, kw)) || !(proc = py.PyObject_GetAttrString(inst, "process")) ||
        !(sc = py.PyObject_GetAttrString(inst, "scale")) || !(ns = py.PyObject_GetAttrString(inst, "num_streams")))
        goto pyfail;
    scale = py.PyLong_AsLongLong(sc);
    streams = py.PyLong_AsLongLong(ns);
    if (py.PyErr_Occurred())
        goto pyfail;
    goto done;
pyfail:
    take_error(err, sizeof err);
done:
    decref(ns); decref(sc); decref(inst); decref(args); decref(info); decref(kw); decref(fn); decref(mod);
    if (!err[0] && (scale < 1 || scale > 16))
        snprintf(err, sizeof err, "psr2.Upscale: bad scale %lld from psr2video.vs.filter.create", scale);
    if (err[0]) {
        decref(proc);
        py.PyGILState_Release(g);
        vsapi->mapSetError(out, err);
        vsapi->freeNode(node);
        return;
    }
    py.PyGILState_Release(g);

    UpscaleData *d = (UpscaleData *)calloc(1, sizeof(UpscaleData));
    d->node = node;
    d->process = proc;
    d->scale = (int)scale;
    vi.width *= d->scale; /* 0 (variable size) stays 0: each frame is scaled by its own size */
    vi.height *= d->scale;
    VSFilterDependency deps[] = {{node, rpStrictSpatial}};
    /* One model instance: fmParallelRequests (the core runs one frame at a time here and keeps its other
     * threads free for decoding/conversion). Several: fmParallel, Python hands each frame a free instance. */
    int mode = streams > 1 ? fmParallel : fmParallelRequests;
    vsapi->createVideoFilter(out, "Upscale", &vi, upscaleGetFrame, upscaleFree, mode, deps, 1, d, core);
}

VS_EXTERNAL_API(void) VapourSynthPluginInit2(VSPlugin *plugin, const VSPLUGINAPI *vspapi) {
    vspapi->configPlugin("com.psr2video.psr2", "psr2", "psr2video: ParagonSR2 video super-resolution",
                         VS_MAKE_VERSION(0, PSR2_PLUGIN_VERSION), VAPOURSYNTH_API_VERSION, 0, plugin);
    vspapi->registerFunction("Upscale",
                             "clip:vnode;variant:data:opt;scale:int:opt;weights:data:opt;model:data:opt;backend:data:opt;"
                             "precision:data:opt;tile:int:opt;overlap:int:opt;num_streams:int:opt;device:data:opt;"
                             "tta:int:opt;",
                             "clip:vnode;", upscaleCreate, NULL, plugin);
}
