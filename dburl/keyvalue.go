package dburl

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// libpq's connection keywords (PostgreSQL's "Parameter Key Words"): a
// string that begins with one of them and '=' is a key=value connection
// string, never a file name.
var libpqKeywords = []string{"host", "hostaddr", "port", "dbname", "user", "password", "passfile",
	"require_auth", "channel_binding", "connect_timeout", "client_encoding", "options", "application_name",
	"fallback_application_name", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
	"tcp_user_timeout", "replication", "gssencmode", "sslmode", "requiressl", "sslnegotiation",
	"sslcompression", "sslcert", "sslkey", "sslpassword", "sslcertmode", "sslrootcert", "sslcrl",
	"sslcrldir", "sslsni", "requirepeer", "ssl_min_protocol_version", "ssl_max_protocol_version", "krbsrvname",
	"gsslib", "gssdelegation", "service", "target_session_attrs", "load_balance_hosts", "search_path",
	"statement_cache_capacity", "pool_max_conns", "pool_min_conns"}

var keyValueStart = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=`)

// isKeyValue tells whether raw looks like a key=value connection string:
// a word and '=' before any space or path separator.
func isKeyValue(raw string) bool { return keyValueStart.MatchString(raw) }

// fromKeyValue reads a libpq key=value connection string (values bare or
// in single quotes, with \' and \\ inside) into the postgres:// URL that
// names the same connection, so that every part of durlab reads one form.
func fromKeyValue(raw string) (string, error) {
	pairs, err := splitKeyValue(raw)
	if err != nil {
		return "", err
	}
	u := url.URL{Scheme: "postgres", Path: "/"}
	q := url.Values{}
	var user, password string
	var hasUser, hasPassword bool
	var hosts, ports []string
	for _, p := range pairs {
		if !slices.Contains(libpqKeywords, p.key) {
			// The string itself is not echoed: a misspelt keyword may hold
			// a password Redact cannot know.
			return "", malformedf("%q is not a libpq connection keyword, in a key=value connection string (for a file whose name starts so, write ./ before it)", p.key)
		}
		switch p.key {
		case "host":
			hosts = strings.Split(p.value, ",")
		case "port":
			ports = strings.Split(p.value, ",")
		case "user":
			user, hasUser = p.value, true
		case "password":
			password, hasPassword = p.value, true
		case "dbname":
			u.Path = "/" + p.value
		default:
			q.Set(p.key, p.value)
		}
	}
	// A socket directory, or ports the hosts cannot carry one by one, go
	// in the query, where pgx reads them too.
	socket := slices.ContainsFunc(hosts, func(h string) bool { return strings.HasPrefix(h, "/") })
	switch {
	case socket || len(ports) > 1 && len(ports) != len(hosts):
		if len(hosts) > 0 {
			q.Set("host", strings.Join(hosts, ","))
		}
		if len(ports) > 0 {
			q.Set("port", strings.Join(ports, ","))
		}
	default:
		for i, h := range hosts {
			if i < len(ports) {
				h += ":" + ports[i]
			} else if len(ports) == 1 {
				h += ":" + ports[0]
			}
			hosts[i] = h
		}
		u.Host = strings.Join(hosts, ",")
		if len(hosts) == 0 && len(ports) == 1 {
			u.Host = "localhost:" + ports[0]
		}
	}
	switch {
	case hasPassword:
		u.User = url.UserPassword(user, password)
	case hasUser:
		u.User = url.User(user)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

type keyValuePair struct{ key, value string }

func splitKeyValue(raw string) ([]keyValuePair, error) {
	var pairs []keyValuePair
	s := raw
	for {
		s = strings.TrimLeft(s, " \t\n\r")
		if s == "" {
			return pairs, nil
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, malformedf("a key=value connection string needs key=value pairs: %s", Redact(raw))
		}
		key := strings.TrimSpace(s[:eq])
		s = strings.TrimLeft(s[eq+1:], " \t")
		var value strings.Builder
		if strings.HasPrefix(s, "'") {
			closed := false
			i := 1
			for ; i < len(s); i++ {
				switch c := s[i]; {
				case c == '\\' && i+1 < len(s):
					i++
					value.WriteByte(s[i])
				case c == '\'':
					closed = true
				default:
					value.WriteByte(c)
				}
				if closed {
					break
				}
			}
			if !closed {
				return nil, malformedf("an unterminated quoted value in a key=value connection string: %s", Redact(raw))
			}
			s = s[i+1:]
		} else {
			end := strings.IndexAny(s, " \t\n\r")
			if end < 0 {
				end = len(s)
			}
			for i := 0; i < end; i++ {
				if s[i] == '\\' && i+1 < end {
					i++
				}
				value.WriteByte(s[i])
			}
			s = s[end:]
		}
		pairs = append(pairs, keyValuePair{key, value.String()})
	}
}
