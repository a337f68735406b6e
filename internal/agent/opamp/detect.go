package opamp

import "strings"

// Detected is where the agent found itself running, in OpenTelemetry semantic
// convention values (cloud.provider, cloud.region, cloud.platform).
type Detected struct {
	Cloud, Region, Platform string
}

// Detect reads the environment variables that the major clouds and Kubernetes
// set inside workloads. It makes no network calls: metadata endpoints are slow or
// blocked in many customer networks, and flags can always override.
func Detect(env []string) Detected {
	vars := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	first := func(keys ...string) string {
		for _, k := range keys {
			if v := vars[k]; v != "" {
				return v
			}
		}
		return ""
	}
	var d Detected
	switch {
	case first("AWS_LAMBDA_FUNCTION_NAME") != "":
		d = Detected{Cloud: "aws", Platform: "aws_lambda"}
	case first("ECS_CONTAINER_METADATA_URI_V4", "ECS_CONTAINER_METADATA_URI") != "":
		d = Detected{Cloud: "aws", Platform: "aws_ecs"}
	case first("AWS_REGION", "AWS_DEFAULT_REGION") != "":
		d = Detected{Cloud: "aws"}
	case first("K_SERVICE") != "" && first("K_CONFIGURATION") != "":
		d = Detected{Cloud: "gcp", Platform: "gcp_cloud_run"}
	case first("FUNCTION_TARGET") != "" && first("GOOGLE_CLOUD_PROJECT", "GCP_PROJECT") != "":
		d = Detected{Cloud: "gcp", Platform: "gcp_cloud_functions"}
	case first("GOOGLE_CLOUD_PROJECT", "GCP_PROJECT", "GOOGLE_CLOUD_REGION") != "":
		d = Detected{Cloud: "gcp"}
	case first("FUNCTIONS_WORKER_RUNTIME") != "":
		d = Detected{Cloud: "azure", Platform: "azure_functions"}
	case first("WEBSITE_SITE_NAME") != "":
		d = Detected{Cloud: "azure", Platform: "azure_app_service"}
	case first("CONTAINER_APP_NAME") != "":
		d = Detected{Cloud: "azure", Platform: "azure_container_apps"}
	case first("AZURE_REGION", "REGION_NAME") != "":
		d = Detected{Cloud: "azure"}
	}
	switch d.Cloud {
	case "aws":
		d.Region = first("AWS_REGION", "AWS_DEFAULT_REGION")
	case "gcp":
		d.Region = first("GOOGLE_CLOUD_REGION", "FUNCTION_REGION", "CLOUDSDK_COMPUTE_REGION")
	case "azure":
		d.Region = first("REGION_NAME", "AZURE_REGION", "LOCATION")
	}
	if d.Platform == "" && first("KUBERNETES_SERVICE_HOST") != "" {
		d.Platform = map[string]string{"aws": "aws_eks", "gcp": "gcp_kubernetes_engine", "azure": "azure_aks"}[d.Cloud]
		if d.Platform == "" {
			d.Platform = "kubernetes"
		}
	}
	return d
}
