{{/*
Expand the name of the chart.
*/}}
{{- define "waldur-site-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "waldur-site-agent.fullname" -}}
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

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "waldur-site-agent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "waldur-site-agent.labels" -}}
helm.sh/chart: {{ include "waldur-site-agent.chart" . }}
{{ include "waldur-site-agent.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "waldur-site-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "waldur-site-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}



{{/*
Create the name of the service account to use
*/}}
{{- define "waldur-site-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "waldur-site-agent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
{{/*
Create the name of the secret to use (existingSecret first)
*/}}
{{- define "waldur-site-agent.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else if .Values.secret.name }}
{{- .Values.secret.name }}
{{- else }}
{{- include "waldur-site-agent.fullname" . }}-secret
{{- end }}
{{- end }}

{{/*
The agent modes: values key, mode name, component name. Order is the command line's.
*/}}
{{- define "waldur-site-agent.modeTable" -}}
- {key: eventProcess, mode: event_process, component: event-process}
- {key: report, mode: report, component: report}
- {key: orderProcess, mode: order_process, component: order-process}
- {key: membershipSync, mode: membership_sync, component: membership-sync}
{{- end }}

{{/*
The Deployments to render, as a YAML list of {component, modes, replicas, resources}.
*/}}
{{- define "waldur-site-agent.workloads" -}}
{{- $v := .Values }}
{{- $table := include "waldur-site-agent.modeTable" . | fromYamlArray }}
{{- if $v.allInOne.enabled }}
{{- $modes := list }}
{{- range $table }}
{{- if (index $v.agents .key).enabled }}
{{- $modes = append $modes .mode }}
{{- end }}
{{- end }}
{{- if $modes }}
- component: all-in-one
  modes: {{ join "," $modes | quote }}
  replicas: {{ $v.allInOne.replicas }}
  resources: {{ default $v.resources $v.allInOne.resources | toJson }}
{{- end }}
{{- else }}
{{- range $table }}
{{- $a := index $v.agents .key }}
{{- if $a.enabled }}
- component: {{ .component }}
  modes: {{ .mode | quote }}
  replicas: {{ $a.replicas }}
  resources: {{ default $v.resources $a.resources | toJson }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
