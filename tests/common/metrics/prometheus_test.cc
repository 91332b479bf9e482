// The Prometheus registry's text format: families sorted, counters, gauges, histograms with cumulative buckets,
// escaped label values, and collectors that stop reporting once their handle is gone. The HTTP endpoint serves it.
#include "common/metrics/prometheus.h"

#include <httplib.h>

#include "common/metrics/http_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(PrometheusTest, RendersEachKindInTheTextFormat) {
  Registry r;
  r.CounterAdd("alignd_things_total", "Things.", {{"kind", "a"}}, 2);
  r.CounterAdd("alignd_things_total", "Things.", {{"kind", "a"}}, 1);
  r.GaugeSet("alignd_depth", "Depth.", {}, 4);
  r.GaugeAdd("alignd_depth", "Depth.", {}, -1);
  r.Observe("alignd_wait_seconds", "Waits.", {{"method", "/x.Y/Z"}}, 0.003, {0.001, 0.01, 0.1});
  r.Observe("alignd_wait_seconds", "Waits.", {{"method", "/x.Y/Z"}}, 0.05, {0.001, 0.01, 0.1});
  r.Observe("alignd_wait_seconds", "Waits.", {{"method", "/x.Y/Z"}}, 7, {0.001, 0.01, 0.1});
  const std::string text = r.Render();
  EXPECT_EQ(text,
            "# HELP alignd_depth Depth.\n# TYPE alignd_depth gauge\nalignd_depth 3\n"
            "# HELP alignd_things_total Things.\n# TYPE alignd_things_total counter\n"
            "alignd_things_total{kind=\"a\"} 3\n"
            "# HELP alignd_wait_seconds Waits.\n# TYPE alignd_wait_seconds histogram\n"
            "alignd_wait_seconds_bucket{method=\"/x.Y/Z\",le=\"0.001\"} 0\n"
            "alignd_wait_seconds_bucket{method=\"/x.Y/Z\",le=\"0.01\"} 1\n"
            "alignd_wait_seconds_bucket{method=\"/x.Y/Z\",le=\"0.1\"} 2\n"
            "alignd_wait_seconds_bucket{method=\"/x.Y/Z\",le=\"+Inf\"} 3\n"
            "alignd_wait_seconds_sum{method=\"/x.Y/Z\"} 7.053\n"
            "alignd_wait_seconds_count{method=\"/x.Y/Z\"} 3\n");
}

TEST(PrometheusTest, LabelValuesAreEscaped) { EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd"); }

TEST(PrometheusTest, CollectorsReportUntilTheirHandleGoes) {
  Registry r;
  auto handle = r.AddCollector([](std::vector<Sample>* out) {
    out->push_back({"alignd_jobs", "Jobs by state.", "gauge", {{"state", "RUNNING"}}, 2});
  });
  EXPECT_THAT(r.Render(), HasSubstr("alignd_jobs{state=\"RUNNING\"} 2\n"));
  handle.reset();
  EXPECT_THAT(r.Render(), Not(HasSubstr("alignd_jobs")));
}

TEST(PrometheusTest, MetricsServerServesTheDefaultRegistry) {
  Registry::Default().CounterAdd("alignd_test_scrapes_total", "Scrapes in this test.", {}, 5);
  auto server = StartMetricsServer("127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  httplib::Client client("127.0.0.1", (*server)->port());
  client.set_connection_timeout(5, 0);
  client.set_read_timeout(5, 0);
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_THAT(res->body, HasSubstr("alignd_test_scrapes_total 5\n"));
  EXPECT_EQ(client.Get("/elsewhere")->status, 404);
  EXPECT_EQ(StartMetricsServer("nowhere").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StartMetricsServer("").value(), nullptr);  // no flag, no server
}

}  // namespace
}  // namespace alignd::metrics
