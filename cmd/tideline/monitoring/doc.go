// Package monitoring holds what an operator loads into Prometheus,
// Alertmanager and Grafana to watch Tideline: alerts.yml (the alert
// rules, with their unit tests in alerts_test.yml), prometheus.yml (a
// scrape configuration), alertmanager.yml (e-mail, webhook and Slack) and
// grafana-dashboard.json. Its tests check them with the real tools
// (promtool, amtool, prometheus, prometheus-alertmanager) against a
// running server.
package monitoring
