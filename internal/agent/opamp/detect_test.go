package opamp

import "testing"

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want Detected
	}{
		{nil, Detected{}},
		{[]string{"AWS_REGION=eu-west-1", "ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/x"}, Detected{"aws", "eu-west-1", "aws_ecs"}},
		{[]string{"AWS_DEFAULT_REGION=us-east-2", "KUBERNETES_SERVICE_HOST=10.0.0.1"}, Detected{"aws", "us-east-2", "aws_eks"}},
		{[]string{"K_SERVICE=api", "K_CONFIGURATION=api", "GOOGLE_CLOUD_REGION=europe-west4"}, Detected{"gcp", "europe-west4", "gcp_cloud_run"}},
		{[]string{"WEBSITE_SITE_NAME=app", "REGION_NAME=westeurope"}, Detected{"azure", "westeurope", "azure_app_service"}},
		{[]string{"KUBERNETES_SERVICE_HOST=10.0.0.1"}, Detected{"", "", "kubernetes"}},
	} {
		if got := Detect(tc.env); got != tc.want {
			t.Errorf("Detect(%v) = %+v, want %+v", tc.env, got, tc.want)
		}
	}
}

func TestOpAMPURL(t *testing.T) {
	for _, tc := range []struct{ base, transport, want string }{
		{"http://127.0.0.1:7070", "websocket", "ws://127.0.0.1:7070/v1/opamp"},
		{"https://periscope.example.com/", "websocket", "wss://periscope.example.com/v1/opamp"},
		{"https://periscope.example.com/base", "http", "https://periscope.example.com/base/v1/opamp"},
	} {
		if got, _ := OpAMPURL(tc.base, tc.transport); got != tc.want {
			t.Errorf("OpAMPURL(%q, %q) = %q, want %q", tc.base, tc.transport, got, tc.want)
		}
	}
}
