#include "common/http_server.h"

#include <glog/logging.h>
#include <httplib.h>

#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/prometheus.h"

namespace alignd {

struct HttpServer::Impl {
  httplib::Server server;
  std::thread thread;
  std::string host;
  int port = 0;
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() {
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int HttpServer::port() const { return impl_->port; }
const std::string& HttpServer::host() const { return impl_->host; }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& listen,
                                                              std::map<std::string, HttpHandler> routes) {
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("\"", listen, "\" is not HOST:PORT"));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  auto impl = std::make_unique<Impl>();
  impl->host = host;
  impl->server.set_read_timeout(10, 0);
  impl->server.set_write_timeout(10, 0);
  for (auto& [path, handler] : routes) {
    impl->server.Get(path, [handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
      HttpRequest r;
      r.path = req.path;
      for (const auto& [k, v] : req.params) r.query[k] = v;
      for (const auto& [k, v] : req.headers) r.headers[absl::AsciiStrToLower(k)] = v;
      HttpResponse out = handler(r);
      res.status = out.status;
      for (const auto& [k, v] : out.headers) res.set_header(k, v);
      res.set_content(out.body, out.content_type);
    });
  }
  if (port == 0) {
    impl->port = impl->server.bind_to_any_port(host);
  } else {
    impl->port = impl->server.bind_to_port(host, port) ? port : -1;
  }
  if (impl->port <= 0) return absl::UnavailableError(absl::StrCat("cannot listen on ", listen));
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->server.listen_after_bind(); });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<HttpServer>> StartMetricsServer(const std::string& listen) {
  if (listen.empty()) return std::unique_ptr<HttpServer>();
  std::map<std::string, HttpHandler> routes;
  routes["/metrics"] = [](const HttpRequest&) {
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics::Registry::Default().Render();
    return r;
  };
  absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(listen, std::move(routes));
  if (!server.ok()) return absl::Status(server.status().code(), absl::StrCat("--metrics-listen: ", server.status().message()));
  LOG(INFO) << "metrics on http://" << (*server)->host() << ":" << (*server)->port() << "/metrics";
  return server;
}

}  // namespace alignd
