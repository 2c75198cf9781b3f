/* A host without Python: creates a core (plugins autoload), calls psr2.Upscale, prints the error.
 * Used by tests/test_vapoursynth.py to show the shim loads and fails cleanly where no interpreter exists. */
#include <stdio.h>
#include "VapourSynth4.h"
int main(void) {
    const VSAPI *vsapi = getVapourSynthAPI(VAPOURSYNTH_API_VERSION);
    if (!vsapi) { puts("no api"); return 2; }
    VSCore *core = vsapi->createCore(0);
    VSPlugin *std = vsapi->getPluginByNamespace("std", core);
    VSPlugin *psr2 = vsapi->getPluginByNamespace("psr2", core);
    if (!psr2) { puts("psr2 not loaded"); return 3; }
    VSMap *a = vsapi->createMap();
    vsapi->mapSetInt(a, "format", pfRGBS, maReplace);
    VSMap *r = vsapi->invoke(std, "BlankClip", a);
    VSNode *n = vsapi->mapGetNode(r, "clip", 0, NULL);
    VSMap *b = vsapi->createMap();
    vsapi->mapConsumeNode(b, "clip", n, maReplace);
    vsapi->mapSetData(b, "variant", "mks", -1, dtUtf8, maReplace);
    VSMap *o = vsapi->invoke(psr2, "Upscale", b);
    printf("error: %s\n", vsapi->mapGetError(o) ? vsapi->mapGetError(o) : "(none)");
    vsapi->freeMap(o); vsapi->freeMap(b); vsapi->freeMap(r); vsapi->freeMap(a);
    vsapi->freeCore(core);
    return 0;
}
