// The coordinator page's files (coordinator/web/), compiled in by coordinator/web/embed.cmake.
#ifndef ALIGND_COORDINATOR_WEB_ASSETS_H_
#define ALIGND_COORDINATOR_WEB_ASSETS_H_

namespace alignd::coordinator {

struct WebAsset {
  const char* name;  // file name: "index.html", "app.js", ...
  const char* text;
};

extern const WebAsset kWebAssets[];
extern const int kWebAssetCount;

}  // namespace alignd::coordinator

#endif  // ALIGND_COORDINATOR_WEB_ASSETS_H_
