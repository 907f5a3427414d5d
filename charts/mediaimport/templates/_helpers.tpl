{{/* Chart name, truncated to 63 characters. */}}
{{- define "mediaimport.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release + chart name, truncated to 63 characters. */}}
{{- define "mediaimport.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A component's object name: "<fullname>-<component>", within 63 characters. */}}
{{- define "mediaimport.componentName" -}}
{{- $full := include "mediaimport.fullname" .context | trunc (int (sub 62 (len .component))) | trimSuffix "-" }}
{{- printf "%s-%s" $full .component }}
{{- end }}

{{- define "mediaimport.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of a component (immutable in a Deployment): name, instance, component.
Call with (dict "context" $ "component" "operator").
*/}}
{{- define "mediaimport.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mediaimport.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The Kubernetes recommended labels of every object a component owns (and of its pod
templates), plus commonLabels. Call with (dict "context" $ "component" "operator").
*/}}
{{- define "mediaimport.labels" -}}
{{ include "mediaimport.selectorLabels" . }}
app.kubernetes.io/version: {{ .context.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: mediaimport
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
helm.sh/chart: {{ include "mediaimport.chart" .context }}
{{- with .context.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: the tag defaults to the chart's
appVersion, so the operator, API and job images move together; a digest pins it.
Call with (dict "image" .Values.operator.image "context" $).
*/}}
{{- define "mediaimport.image" -}}
{{- $tag := default .context.Chart.AppVersion .image.tag }}
{{- if .image.digest }}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* imagePullSecrets of the chart's pods: the chart's own list plus global's. */}}
{{- define "mediaimport.imagePullSecrets" -}}
{{- $secrets := concat (.Values.imagePullSecrets | default list) ((.Values.global).imagePullSecrets | default list) }}
{{- with $secrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "mediaimport.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "mediaimport.componentName" (dict "context" . "component" "operator")) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mediaimport.api.serviceAccountName" -}}
{{- if .Values.api.serviceAccount.create }}
{{- default (include "mediaimport.componentName" (dict "context" . "component" "api")) .Values.api.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.api.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The namespace the API creates MediaImports in (and the import Jobs run in). */}}
{{- define "mediaimport.api.namespace" -}}
{{- default .Release.Namespace .Values.api.namespace }}
{{- end }}

{{/* The namespaces whose imports the API's users see, comma-separated: the API's own first,
then api.servedNamespaces. The API reads the same list as the operator, which keeps the plain
key layout for these and only these. */}}
{{- define "mediaimport.api.servedNamespaces" -}}
{{- prepend .Values.api.servedNamespaces (include "mediaimport.api.namespace" .) | uniq | join "," }}
{{- end }}

{{/* The leader Lease's name: the RBAC's resourceNames and the operator's setting. */}}
{{/*
The channel's Service and its keys' Secret (the chart's, or the user's own).
*/}}
{{- define "mediaimport.channelName" -}}
{{- include "mediaimport.componentName" (dict "context" . "component" "operator") }}-channel
{{- end }}

{{- define "mediaimport.channelKeysSecret" -}}
{{- .Values.operator.channel.existingSecret | default (include "mediaimport.channelName" .) }}
{{- end }}

{{- define "mediaimport.leaseName" -}}
{{- include "mediaimport.componentName" (dict "context" . "component" "operator") }}
{{- end }}

{{/*
Resources of the import container as the operator's MEDIAIMPORT_JOB_RESOURCES JSON,
laid over the operator's defaults. Helm drops a key set to null from the merged values,
so a CPU or memory entry missing here (the chart has defaults for all four) was removed
by the user and is sent as an explicit null: "limits.cpu: null" means no CPU limit, not
the operator's default.
*/}}
{{- define "mediaimport.job.resources" -}}
{{- $requests := dict "cpu" nil "memory" nil }}
{{- $limits := dict "cpu" nil "memory" nil }}
{{- $given := .Values.job.resources | default dict }}
{{- range $key, $value := ($given.requests | default dict) }}{{ $_ := set $requests $key $value }}{{ end }}
{{- range $key, $value := ($given.limits | default dict) }}{{ $_ := set $limits $key $value }}{{ end }}
{{- dict "requests" $requests "limits" $limits | toJson }}
{{- end }}

{{/* Settings shared by the operator and the API: AWS region and endpoint as plain env. */}}
{{- define "mediaimport.s3.env" -}}
{{- with .Values.s3.region }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- with .Values.s3.endpoint }}
- name: AWS_ENDPOINT_URL_S3
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
Topology spread of a component: each given constraint gets the component's selector
when it names none. Call with (dict "context" $ "component" "api" "constraints" list).
*/}}
{{- define "mediaimport.topologySpread" -}}
{{- $selector := include "mediaimport.selectorLabels" (dict "context" .context "component" .component) | fromYaml }}
{{- $out := list }}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $selector) }}
{{- end }}
{{- $out = append $out $c }}
{{- end }}
{{- with $out }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Bytes of a Kubernetes quantity (250m, 1.5, 65Mi, 20Gi, 1e9), as a float: for the checks the
operator also makes, so helm refuses what the operator would refuse at start.
*/}}
{{- define "mediaimport.quantityBytes" -}}
{{- $q := toString . }}
{{- $units := dict "" 1.0 "m" 0.001 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 }}
{{- $number := regexFind "^[+]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]+)?" $q }}
{{- $unit := trimPrefix $number $q }}
{{- mulf (float64 $number) (get $units $unit) }}
{{- end }}

{{/*
Settings the operator checks when it starts, checked at install: a value the schema lets
through but the operator refuses would crash-loop its pods.
*/}}
{{- define "mediaimport.validate" -}}
{{- with .Values.job.tmpSizeLimit }}
{{- if le (float64 (include "mediaimport.quantityBytes" .)) 67108864.0 }}
{{- fail (printf "job.tmpSizeLimit %v leaves no room for the download besides the 64Mi kept for the thumbnail: at least 65Mi" .) }}
{{- end }}
{{- end }}
{{- $lease := .Values.operator.lease }}
{{- if ge (float64 $lease.renewDeadlineSeconds) (float64 $lease.durationSeconds) }}
{{- fail (printf "operator.lease.renewDeadlineSeconds (%v) must be less than operator.lease.durationSeconds (%v): a leader stops acting at its renew deadline, before its Lease can expire for a standby" $lease.renewDeadlineSeconds $lease.durationSeconds) }}
{{- end }}
{{- end }}
