{{/*
The chart's long-running components, each with its values and where its metrics are
scraped: metricsPort, the Service port's name (ServiceMonitor); podMetricsPort, the
container port's (PodMonitor). The operator always; the API when enabled, on its admin
port (the one the Ingress never reaches) unless api.adminPort is null.
*/}}
{{- define "mediaimport.components" -}}
{{- $components := list (dict "name" "operator" "values" .Values.operator "metricsPort" "http-metrics" "podMetricsPort" "http") }}
{{- if .Values.api.enabled }}
{{- $apiMetrics := ternary "http-admin" "http" (not (empty .Values.api.adminPort)) }}
{{- $components = append $components (dict "name" "api" "values" .Values.api "metricsPort" $apiMetrics "podMetricsPort" $apiMetrics) }}
{{- end }}
{{- toJson $components }}
{{- end }}
