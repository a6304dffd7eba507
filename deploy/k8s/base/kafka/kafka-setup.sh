#!/bin/sh
# Prepares a Kafka cluster for Lindung, as its admin (a super user), with the Apache Kafka image's
# tools: creates the SCRAM-SHA-512 user of every principal named in ./acls, every topic of
# ./topics, and the ACLs of ./acls. Run by the Compose job kafka-init and the Kubernetes Job
# lindung-kafka-setup. Safe to run again: users are updated, topics and ACLs only added (to revoke
# a grant, remove its line here AND run kafka-acls.sh --remove by hand).
#
# Environment:
#   KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL (SASL_PLAINTEXT | SASL_SSL),
#   KAFKA_SASL_MECHANISM (the admin's: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512),
#   KAFKA_ADMIN_USERNAME, KAFKA_ADMIN_PASSWORD, KAFKA_SSL_CAFILE (optional, PEM),
#   KAFKA_PARTITIONS, KAFKA_REPLICATION_FACTOR,
#   <PRINCIPAL>_PASSWORD for each principal, e.g. LINDUNG_REGISTRATION_PASSWORD for
#   lindung-registration (letters, digits, '-' and '_' only: kafka-configs.sh parses it).
set -eu
here=$(dirname "$0")
bin=${KAFKA_BIN:-/opt/kafka/bin}
work=${WORK_DIR:-/tmp}
export LOG_DIR="$work/logs"   # the tools' log4j directory; the image's is read-only in Kubernetes
config="$work/admin.properties"

case "$KAFKA_SASL_MECHANISM" in
  PLAIN) module=org.apache.kafka.common.security.plain.PlainLoginModule ;;
  SCRAM-SHA-*) module=org.apache.kafka.common.security.scram.ScramLoginModule ;;
  *) echo "unsupported KAFKA_SASL_MECHANISM $KAFKA_SASL_MECHANISM" >&2; exit 1 ;;
esac
umask 077
cat > "$config" <<EOF
security.protocol=$KAFKA_SECURITY_PROTOCOL
sasl.mechanism=$KAFKA_SASL_MECHANISM
sasl.jaas.config=$module required username="$KAFKA_ADMIN_USERNAME" password="$KAFKA_ADMIN_PASSWORD";
EOF
if [ -n "${KAFKA_SSL_CAFILE:-}" ]; then
  printf 'ssl.truststore.type=PEM\nssl.truststore.location=%s\n' "$KAFKA_SSL_CAFILE" >> "$config"
fi
connect="--bootstrap-server $KAFKA_BOOTSTRAP_SERVERS --command-config $config"

# Lines of a table file without comments and blank lines.
rows() { grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$1"; }

for principal in $(rows "$here/acls" | awk '{ print $1 }' | sort -u); do
  variable="$(echo "$principal" | tr 'a-z-' 'A-Z_')_PASSWORD"
  eval "password=\${$variable:-}"
  if [ -z "$password" ]; then
    echo "$variable is not set (the password of Kafka user $principal)" >&2
    exit 1
  fi
  echo "user $principal"
  $bin/kafka-configs.sh $connect --alter --entity-type users --entity-name "$principal" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$password]"
done

for topic in $(rows "$here/topics"); do
  echo "topic $topic"
  $bin/kafka-topics.sh $connect --create --if-not-exists --topic "$topic" \
    --partitions "$KAFKA_PARTITIONS" --replication-factor "$KAFKA_REPLICATION_FACTOR"
done

# One kafka-acls.sh (one JVM) per run of lines with the same principal, operation, resource type
# and pattern type: "P OP TYPE PATTERN name name ...".
rows "$here/acls" | awk '
  { key = $1 " " $2 " " $3 " " $4 }
  key != previous { if (previous != "") print previous names; previous = key; names = "" }
  { names = names " " $5 }
  END { if (previous != "") print previous names }
' | while read -r principal operation resource pattern names; do
  options=""
  for name in $names; do options="$options --$resource $name"; done
  echo "acl $principal $operation $resource ($pattern):$names"
  $bin/kafka-acls.sh $connect --add --allow-principal "User:$principal" \
    --operation "$operation" --resource-pattern-type "$pattern" $options < /dev/null
done

echo "ACLs now on the cluster:"
$bin/kafka-acls.sh $connect --list
