{{/*
The chart's long-running components, each with its values and the Service port name
its metrics are scraped on: the operator always, the API when enabled.
*/}}
{{- define "mediaimport.components" -}}
{{- $components := list (dict "name" "operator" "values" .Values.operator "metricsPort" "http-metrics") }}
{{- if .Values.api.enabled }}
{{- $components = append $components (dict "name" "api" "values" .Values.api "metricsPort" "http") }}
{{- end }}
{{- toJson $components }}
{{- end }}
