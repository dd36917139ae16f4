{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "olmoflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, plus the chart name unless the release name already contains it. */}}
{{- define "olmoflow.fullname" -}}
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

{{- define "olmoflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "olmoflow.labels" -}}
helm.sh/chart: {{ include "olmoflow.chart" . }}
{{ include "olmoflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "olmoflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "olmoflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "mlflow"). */}}
{{- define "olmoflow.componentLabels" -}}
{{ include "olmoflow.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "olmoflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "olmoflow.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "repository:tag" of one images.* entry, the tag defaulting to appVersion: (dict "ctx" $ "image" .Values.images.x). */}}
{{- define "olmoflow.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}

{{- define "olmoflow.mlflowName" -}}
{{- printf "%s-mlflow" (include "olmoflow.fullname" .) }}
{{- end }}

{{- define "olmoflow.postgresName" -}}
{{- printf "%s-postgres" (include "olmoflow.fullname" .) }}
{{- end }}

{{/* In-cluster URL of the MLflow server, for pipeline pods and job pods. */}}
{{- define "olmoflow.mlflowUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "olmoflow.mlflowName" .) .Release.Namespace (int .Values.mlflow.port) }}
{{- end }}

{{/* Host headers MLflow accepts: its defaults (localhost, private IPs; kubelet probes and pod IPs), every name
     of its Service with and without the port, and mlflow.allowedHosts. Setting the list replaces the defaults. */}}
{{- define "olmoflow.mlflowAllowedHosts" -}}
{{- $svc := include "olmoflow.mlflowName" . }}
{{- $hosts := list "localhost" "localhost:*" "127.0.0.1" "127.0.0.1:*" "10.*" "192.168.*" }}
{{- range $i := until 16 }}
{{- $hosts = append $hosts (printf "172.%d.*" (add 16 $i)) }}
{{- end }}
{{- range $name := list $svc (printf "%s.%s" $svc $.Release.Namespace) (printf "%s.%s.svc" $svc $.Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc $.Release.Namespace) }}
{{- $hosts = append $hosts $name }}
{{- $hosts = append $hosts (printf "%s:%d" $name (int $.Values.mlflow.port)) }}
{{- end }}
{{- concat $hosts .Values.mlflow.allowedHosts | join "," }}
{{- end }}

{{/* Secret holding AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; empty when S3 access uses workload identity. */}}
{{- define "olmoflow.s3SecretName" -}}
{{- if .Values.s3.existingSecret }}
{{- .Values.s3.existingSecret }}
{{- else if .Values.s3.accessKeyId }}
{{- printf "%s-s3" (include "olmoflow.fullname" .) }}
{{- end }}
{{- end }}

{{/* Secret and key holding MLflow's backend store URI. */}}
{{- define "olmoflow.backendSecretName" -}}
{{- if .Values.postgres.enabled }}
{{- include "olmoflow.postgresName" . }}
{{- else }}
{{- required "mlflow.backend.existingSecret is required when postgres.enabled is false" .Values.mlflow.backend.existingSecret }}
{{- end }}
{{- end }}

{{- define "olmoflow.backendSecretKey" -}}
{{- if .Values.postgres.enabled }}uri{{ else }}{{ .Values.mlflow.backend.secretKey }}{{ end }}
{{- end }}

{{/* Secret holding the bundled Postgres's password (key `password`). */}}
{{- define "olmoflow.postgresSecretName" -}}
{{- default (include "olmoflow.postgresName" .) .Values.postgres.existingSecret }}
{{- end }}

{{/* MLflow's backend store URI, by reference only: an external database's URI from its Secret; the bundled
     Postgres's built by the kubelet from the password Secret ($(POSTGRES_PASSWORD)), so no rendered manifest and
     no command line holds the password. */}}
{{- define "olmoflow.backendEnv" -}}
{{- if .Values.postgres.enabled }}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "olmoflow.postgresSecretName" . }}
      key: password
- name: MLFLOW_BACKEND_STORE_URI
  value: {{ printf "postgresql+psycopg://%s:$(POSTGRES_PASSWORD)@%s:5432/%s" .Values.postgres.user (include "olmoflow.postgresName" .) .Values.postgres.database | quote }}
{{- else }}
- name: MLFLOW_BACKEND_STORE_URI
  valueFrom:
    secretKeyRef:
      name: {{ include "olmoflow.backendSecretName" . }}
      key: {{ include "olmoflow.backendSecretKey" . }}
{{- end }}
{{- end }}

{{/* MLflow client credentials (mlflow.auth.clientSecret), for pods that call the server. */}}
{{- define "olmoflow.mlflowClientEnv" -}}
{{- if .Values.mlflow.auth.enabled }}
{{- range list "MLFLOW_TRACKING_USERNAME" "MLFLOW_TRACKING_PASSWORD" }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.mlflow.auth.clientSecret }}
      key: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/* Bucket URIs: required, since bucket names are global and no default could be anyone's. */}}
{{- define "olmoflow.store" -}}
{{- required "s3.store is required: the flow's artifact store, s3://BUCKET/PREFIX" .Values.s3.store }}
{{- end }}

{{- define "olmoflow.artifactsDestination" -}}
{{- required "mlflow.artifactsDestination is required: where MLflow keeps run artifacts, s3://BUCKET/PREFIX" .Values.mlflow.artifactsDestination }}
{{- end }}

{{/* What every pod of the chart shares: nodeSelector, tolerations, affinity, priorityClassName, pull secrets. */}}
{{- define "olmoflow.podCommon" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* S3 env for MLflow and the test pod: credentials by reference, endpoint and region as plain values. */}}
{{- define "olmoflow.s3Env" -}}
{{- $secret := include "olmoflow.s3SecretName" . }}
{{- if $secret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
{{- with .Values.s3.endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.s3.region }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/* The launcher's ClusterConfig (olmoflow/cluster/config.py), rendered as JSON. */}}
{{- define "olmoflow.clusterConfig" -}}
{{- $v := .Values }}
{{- $pullSecrets := list }}
{{- range $v.imagePullSecrets }}
{{- $pullSecrets = append $pullSecrets .name }}
{{- end }}
{{- $cfg := dict
  "namespace" .Release.Namespace
  "train_backend" $v.launcher.trainBackend
  "trainjob_runtime" $v.launcher.trainJobRuntime
  "trainer_image" (include "olmoflow.image" (dict "ctx" . "image" $v.images.trainer))
  "curate_image" (include "olmoflow.image" (dict "ctx" . "image" $v.images.curate))
  "image_pull_policy" $v.images.trainer.pullPolicy
  "image_pull_secrets" $pullSecrets
  "service_account" $v.launcher.jobServiceAccount
  "gpus_per_node" (int $v.gpuPool.gpusPerNode)
  "gpu_resource" $v.gpuPool.gpuResource
  "node_selector" $v.gpuPool.nodeSelector
  "tolerations" $v.gpuPool.tolerations
  "cpu" (toString $v.gpuPool.cpu)
  "memory" (toString $v.gpuPool.memory)
  "shm_size" $v.launcher.shmSize
  "work_dir" $v.workVolume.mountPath
  "work_volume" $v.workVolume.type
  "work_size" (toString $v.workVolume.size)
  "work_storage_class" $v.workVolume.storageClassName
  "mlflow_secret" (ternary $v.mlflow.auth.clientSecret "" $v.mlflow.auth.enabled)
  "sources_uri" $v.s3.sources
  "s3_secret" (include "olmoflow.s3SecretName" .)
  "s3_endpoint" $v.s3.endpoint
  "s3_region" $v.s3.region
  "mlflow_tracking_uri" (include "olmoflow.mlflowUrl" .)
  "ray_head_cpu" (toString $v.launcher.rayHeadCpu)
  "ray_head_memory" (toString $v.launcher.rayHeadMemory)
  "timeout_s" $v.launcher.timeoutSeconds
  "backoff_limit" (int $v.launcher.backoffLimit)
  "poll_s" $v.launcher.pollSeconds
  "poll_max_s" $v.launcher.pollMaxSeconds
}}
{{- toPrettyJson $cfg }}
{{- end }}

{{/* PipelineSettings (olmoflow/cluster/settings.py) that cluster.json does not already give: what the
     registration Job compiles the pipeline with (`olmoflow compile --cluster-config --settings`). */}}
{{- define "olmoflow.pipelineSettings" -}}
{{- toYaml (dict "cluster_config_map" (printf "%s-cluster" (include "olmoflow.fullname" .))) }}
{{- end }}

{{/* Annotations of the chart's pods: podAnnotations plus a pod's own (a dict). */}}
{{- define "olmoflow.podAnnotations" -}}
{{- $all := merge (dict) (.own | default dict) .ctx.Values.podAnnotations }}
{{- with $all }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The job CRDs the launchers need, for the kinds rbac allows: name, served version, a field of the version's
     spec that the needed operator release introduced (so an older operator is named), and that release. */}}
{{- define "olmoflow.crdRequirements" -}}
{{- $need := list }}
{{- if and .Values.rbac.trainJobs (eq .Values.launcher.trainBackend "trainjob") }}
{{- $need = append $need (dict "name" "trainjobs.trainer.kubeflow.org" "version" "v1alpha1" "field" "runtimePatches" "release" "Kubeflow Trainer >= 2.2") }}
{{- end }}
{{- if and .Values.rbac.pyTorchJobs (eq .Values.launcher.trainBackend "pytorchjob") }}
{{- $need = append $need (dict "name" "pytorchjobs.kubeflow.org" "version" "v1" "field" "nprocPerNode" "release" "Kubeflow Training Operator >= 1.7") }}
{{- end }}
{{- if .Values.rbac.rayJobs }}
{{- $need = append $need (dict "name" "rayjobs.ray.io" "version" "v1" "field" "backoffLimit" "release" "KubeRay >= 1.2") }}
{{- end }}
{{- toYaml $need }}
{{- end }}

{{/* "" when CRD object .crd meets requirement .need, else one sentence saying what is missing. */}}
{{- define "olmoflow.crdProblem" -}}
{{- $n := .need }}
{{- if not .crd }}
{{- printf "CRD %s is not installed: install %s" $n.name $n.release }}
{{- else }}
{{- $served := dict }}
{{- range $v := .crd.spec.versions }}
{{- if $v.served }}{{- $_ := set $served $v.name $v }}{{- end }}
{{- end }}
{{- $version := get $served $n.version }}
{{- if not $version }}
{{- printf "CRD %s does not serve %s (it serves %s): install %s" $n.name $n.version (keys $served | sortAlpha | join ",") $n.release }}
{{- else }}
{{- $spec := dig "schema" "openAPIV3Schema" "properties" "spec" "properties" (dict) $version }}
{{- if not (hasKey $spec $n.field) }}
{{- printf "CRD %s %s has no spec.%s: upgrade to %s" $n.name $n.version $n.field $n.release }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
