# Ruby's Net::HTTP for compat/run-compat.
#
# usage: ruby rbclient.rb net-http URL...   (or: version)
#
# One Net::HTTP.start session (a persistent connection), the requests one
# after the other. Prints per request:
#   RESULT <i> <status> <body length> <md5 of body>
#   ERROR <i> <message>
require 'net/http'
require 'digest/md5'
require 'uri'
$stdout.sync = true
mode, *urls = ARGV
if mode == 'version'
  puts "ruby #{RUBY_VERSION}, net-http #{Net::HTTP::VERSION rescue '?'}"
  exit 0
end
u0 = URI(urls[0])
begin
  Net::HTTP.start(u0.host, u0.port, read_timeout: 300) do |h|
    urls.each_with_index do |u, i|
      begin
        r = h.get(URI(u).request_uri)
        b = r.body || ''
        puts "RESULT #{i + 1} #{r.code} #{b.bytesize} #{Digest::MD5.hexdigest(b)}"
      rescue => e
        puts "ERROR #{i + 1} #{e.class}: #{e.message.gsub(/\s+/, ' ')}"
      end
    end
  end
rescue => e
  puts "ERROR 1 #{e.class}: #{e.message.gsub(/\s+/, ' ')}"
end
