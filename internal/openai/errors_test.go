package openai

import "testing"

func TestErrorJSONKeepsAngleBrackets(t *testing.T) {
	got := string(NewError(`send "Authorization: Bearer <key>"`, "invalid_request_error", "invalid_api_key").JSON())
	want := `{"error":{"message":"send \"Authorization: Bearer <key>\"","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}
