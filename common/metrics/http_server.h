// A small HTTP/1.1 server (cpp-httplib underneath) for the metrics endpoint and the coordinator's page: GET and POST
// routes with exact paths, served on their own threads until the server is destroyed.
//
// Thread safety: handlers run on the server's threads, several at once; they must be thread-safe.
#ifndef ALIGND_COMMON_METRICS_HTTP_SERVER_H_
#define ALIGND_COMMON_METRICS_HTTP_SERVER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace alignd {

struct HttpRequest {
  std::string method;  // "GET" or "POST"
  std::string path;
  std::map<std::string, std::string> query;    // decoded
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;                            // POST: as sent (a form's fields are in `query`, decoded)
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::map<std::string, std::string> headers;  // extra headers (Set-Cookie, ...)
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

class HttpServer {
 public:
  // Listens on `listen` (HOST:PORT, port 0: any free one) and serves GET `routes` and POST `post_routes` (path ->
  // handler; anything else 404). Request bodies over 64 KiB are refused (413).
  // INVALID_ARGUMENT for a malformed address, UNAVAILABLE when it cannot bind.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& listen,
                                                           std::map<std::string, HttpHandler> routes,
                                                           std::map<std::string, HttpHandler> post_routes = {});
  ~HttpServer();  // stops listening and joins the server thread
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound port (the chosen one for port 0) and the host part of `listen` (IPv6 brackets stripped).
  int port() const;
  const std::string& host() const;

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The fields of an application/x-www-form-urlencoded body ("a=1&b=x+y" -> {a: "1", b: "x y"}), percent-decoded; a
// repeated name keeps its last value.
std::map<std::string, std::string> ParseForm(absl::string_view body);

// Starts `--metrics-listen`: GET /metrics answers Registry::Default().Render(). An empty `listen` starts nothing
// (nullptr). The bound address is logged as "metrics on http://HOST:PORT/metrics".
absl::StatusOr<std::unique_ptr<HttpServer>> StartMetricsServer(const std::string& listen);

}  // namespace alignd

#endif  // ALIGND_COMMON_METRICS_HTTP_SERVER_H_
