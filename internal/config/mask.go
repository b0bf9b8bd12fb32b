package config

import "net/url"

// MaskURL shows a URL without what usually holds its secret: webhook
// receivers put their token in the path, the query or the userinfo. What
// is left is the scheme and the host, enough to tell which receiver is
// meant: "https://hooks.example.net/…". A URL that does not parse is shown
// as "…" alone.
func MaskURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "…"
	}
	out := u.Scheme + "://" + u.Host
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawPath != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" {
		return out + "/…"
	}
	return out + u.Path
}
